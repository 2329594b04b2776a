// One scenario of tests/socketio/run.sh: real Socket.IO (or engine.io) servers on N backends behind
// one wsgate route (standalone mode, a generated Service + EndpointSlices + Ingress), real clients
// with their default transports, messages both ways, then one backend removed mid-test.
//
//   node driver.mjs --wsgate BIN --kind socketio|engineio --backends N [--clients 20]
//                   [--messages 100] [--no-affinity] [--control] --label TEXT --workdir DIR
//
// Prints `ok - ...` / `FAIL - ...` lines (run.sh counts them) and figures. Every process it starts
// (wsgate, backends) is its child and is stopped by PID before it exits, also on a signal or when
// the 150 s watchdog fires.
//
// Clients keep their cookies across reconnects, as a browser does: engine.io-client's Node cookie
// jar (`withCredentials: true`) is per engine, so a new one would start empty after each reconnect;
// here every jar a client's engines create shares that client's store.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { io } from "socket.io-client";
import { Socket as EngineSocket } from "engine.io-client";
import { CookieJar } from "./node_modules/engine.io-client/build/esm-debug/globals.node.js";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const flag = (name) => args.includes(`--${name}`);
const WSGATE = opt("wsgate");
const KIND = opt("kind", "socketio");
const BACKENDS = Number(opt("backends", "2"));
const CLIENTS = Number(opt("clients", "20"));
const MESSAGES = Number(opt("messages", "100"));
const AFFINITY = !flag("no-affinity");
const CONTROL = flag("control");
const LABEL = opt("label", `${KIND} x${BACKENDS}`);
const WORKDIR = opt("workdir");
const COOKIE = "wsgate_affinity";
const HERE = path.dirname(new URL(import.meta.url).pathname);

// ---- processes ----------------------------------------------------------------------------

const children = new Set();
function start(cmd, argv, logName) {
  const log = fs.openSync(path.join(WORKDIR, logName), "a");
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", log] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  child.stdout.on("data", (d) => fs.appendFileSync(path.join(WORKDIR, logName), d));
  return child;
}
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  try {
    process.kill(child.pid, "SIGTERM");
  } catch {}
  const t = setTimeout(() => {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {}
  }, 5000);
  await exited;
  clearTimeout(t);
}
function killAll() {
  for (const c of children) {
    try {
      process.kill(c.pid, "SIGKILL");
    } catch {}
  }
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    killAll();
    process.exit(1);
  });
}
setTimeout(() => {
  console.log(`FAIL - ${LABEL}: watchdog: scenario did not finish within 150 s`);
  killAll();
  process.exit(1);
}, 150_000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
async function until(what, cond, ms) {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) return false;
    await sleep(25);
  }
  return true;
}
async function fetchText(url) {
  try {
    const r = await fetch(url);
    return { status: r.status, text: await r.text() };
  } catch {
    return { status: 0, text: "" };
  }
}

// ---- configuration ------------------------------------------------------------------------

const routePath = KIND === "socketio" ? "/socket.io" : "/engine.io";
function configYaml(backends) {
  let y =
    "apiVersion: v1\nkind: Service\nmetadata: {name: chat, namespace: sio}\n" +
    "spec:\n  ports: [{name: http, port: 80}]\n---\n";
  // One EndpointSlice per backend: they listen on different ports of 127.0.0.1.
  for (const b of backends) {
    y +=
      "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n" +
      `metadata: {name: chat-${b.name}, namespace: sio, labels: {kubernetes.io/service-name: chat}}\n` +
      `addressType: IPv4\nports: [{name: http, port: ${b.port}}]\nendpoints: [{addresses: [127.0.0.1]}]\n---\n`;
  }
  const annotations = AFFINITY ? '  annotations: {"wsgate.dev/affinity": "cookie"}\n' : "";
  y +=
    "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: chat\n  namespace: sio\n" +
    annotations +
    "spec:\n  ingressClassName: wsgate\n  rules:\n  - http:\n      paths:\n" +
    `      - {path: ${routePath}, pathType: Prefix, backend: {service: {name: chat, port: {name: http}}}}\n`;
  return y;
}
function writeConfig(dir, backends) {
  const tmp = path.join(dir, ".app.yaml.tmp");
  fs.writeFileSync(tmp, configYaml(backends));
  fs.renameSync(tmp, path.join(dir, "app.yaml"));
}

// ---- cookie persistence across reconnects --------------------------------------------------

// While a client opens a new engine, every CookieJar constructed uses that client's store.
let currentStore = null;
Object.defineProperty(CookieJar.prototype, "_cookies", {
  configurable: true,
  get() {
    return this.__store;
  },
  set(fresh) {
    this.__store = currentStore ?? fresh;
  },
});
const cookieOf = (c) => c.store.get(COOKIE)?.value ?? null;

// ---- clients ------------------------------------------------------------------------------

function newClient(i, base) {
  const c = {
    i,
    store: new Map(),
    backend: null,
    phase: 0,
    echoes: new Map(),
    disconnects: 0,
    connectErrors: 0,
  };
  if (KIND === "socketio") {
    const socket = io(base, {
      path: "/socket.io/",
      withCredentials: true,
      autoConnect: false,
      forceNew: true,
      reconnectionDelay: 200,
      reconnectionDelayMax: 1000,
      timeout: 5000,
    });
    const manager = socket.io;
    const open = manager.open.bind(manager);
    manager.open = (fn) => {
      currentStore = c.store;
      try {
        return open(fn);
      } finally {
        currentStore = null;
      }
    };
    socket.on("hello", (name) => (c.backend = name));
    socket.on("echo", ({ n, backend }) => c.echoes.set(`${c.phase}:${n}`, backend));
    socket.on("connect_error", () => c.connectErrors++);
    socket.on("disconnect", () => {
      c.disconnects++;
      c.backend = null;
    });
    c.transport = () => manager.engine?.transport?.name;
    c.send = (n) => socket.emit("msg", n);
    c.close = () => socket.disconnect();
    socket.connect();
  } else {
    const connect = () => {
      currentStore = c.store;
      let s;
      try {
        s = new EngineSocket(base, {
          path: "/engine.io/",
          transports: ["polling"],
          upgrade: false,
          withCredentials: true,
        });
      } finally {
        currentStore = null;
      }
      c.socket = s;
      s.on("message", (data) => {
        const m = JSON.parse(data);
        if (m.hello) c.backend = m.hello;
        else c.echoes.set(`${c.phase}:${m.n}`, m.backend);
      });
      s.on("error", () => c.connectErrors++);
      s.on("close", () => {
        c.disconnects++;
        c.backend = null;
        if (!c.closing) setTimeout(connect, 200);
      });
    };
    c.transport = () => c.socket?.transport?.name;
    c.send = (n) => c.socket.send(JSON.stringify({ n }));
    c.close = () => {
      c.closing = true;
      c.socket.close();
    };
    connect();
  }
  return c;
}

// ---- the scenario -------------------------------------------------------------------------

let passed = 0;
let failed = 0;
const results = [];
function check(ok, text) {
  results.push(`${ok ? "ok  " : "FAIL"} - ${LABEL}: ${text}`);
  if (ok) passed++;
  else failed++;
}

async function main() {
  const t0 = Date.now();
  const configDir = path.join(WORKDIR, "config");
  fs.mkdirSync(configDir, { recursive: true });
  const backends = [];
  for (let b = 0; b < BACKENDS; b++) {
    const port = await freePort();
    const name = `b${b}`;
    const child = start("node", [path.join(HERE, "backend.mjs"), KIND, name, String(port)], `${name}.log`);
    backends.push({ name, port, child });
  }
  for (const b of backends) {
    const up = await until("backend", async () => (await fetchText(`http://127.0.0.1:${b.port}/stats`)).status === 200, 10_000);
    if (!up) throw new Error(`backend ${b.name} did not start`);
  }
  writeConfig(configDir, backends);
  const [httpPort, httpsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const wsgate = start(
    WSGATE,
    ["run", "--config", configDir, "--bind", "127.0.0.1", "--http-port", String(httpPort),
     "--https-port", String(httpsPort), "--admin-port", String(adminPort), "--log-format", "json",
     "--log-level", "warn"],
    "wsgate.log",
  );
  const admin = `http://127.0.0.1:${adminPort}`;
  const ready = await until("wsgate", async () => (await fetchText(`${admin}/readyz`)).status === 200, 20_000);
  if (!ready) throw new Error("wsgate did not turn ready (see wsgate.log)");
  const base = `http://127.0.0.1:${httpPort}`;
  const waitMs = CONTROL ? 8_000 : 30_000;

  // 1. Connect.
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) clients.push(newClient(i, base));
  const wantTransport = KIND === "socketio" ? "websocket" : "polling";
  const allUp = () => clients.every((c) => c.backend && c.transport() === wantTransport);
  await until("connect", allUp, waitMs);
  const up = clients.filter((c) => c.backend && c.transport() === wantTransport).length;
  check(
    up === CLIENTS,
    `${up}/${CLIENTS} clients connected` +
      (KIND === "socketio" ? " and upgraded from long-polling to WebSocket" : " over long-polling"),
  );
  if (AFFINITY) {
    const withCookie = clients.filter((c) => cookieOf(c)).length;
    check(withCookie === CLIENTS, `${withCookie}/${CLIENTS} clients hold a ${COOKIE} cookie`);
  }
  const spread = new Set(clients.map((c) => c.backend).filter(Boolean));
  if (!CONTROL) check(spread.size === BACKENDS, `clients spread over ${spread.size}/${BACKENDS} backends`);

  // 2. Messages both ways.
  async function phase(p) {
    const owner = new Map(clients.map((c) => [c, c.backend]));
    for (const c of clients) {
      c.phase = p;
      if (c.backend) for (let n = 0; n < MESSAGES; n++) c.send(n);
    }
    const count = (c) => [...c.echoes.keys()].filter((k) => k.startsWith(`${p}:`)).length;
    await until("echoes", () => clients.every((c) => count(c) === MESSAGES), waitMs);
    const sent = clients.filter((c) => owner.get(c)).length * MESSAGES;
    const got = clients.reduce((s, c) => s + count(c), 0);
    const foreign = clients.reduce(
      (s, c) =>
        s + [...c.echoes].filter(([k, b]) => k.startsWith(`${p}:`) && b !== owner.get(c)).length,
      0,
    );
    check(
      got === CLIENTS * MESSAGES && sent === got && foreign === 0,
      `phase ${p}: ${sent}/${CLIENTS * MESSAGES} messages sent and ${got} echoed back, ` +
        `${foreign} answered by a backend other than the client's own`,
    );
  }
  await phase(1);

  const stats = new Map();
  const readStats = async (b) => {
    const r = await fetchText(`http://127.0.0.1:${b.port}/stats`);
    if (r.status === 200) stats.set(b.name, JSON.parse(r.text));
  };

  if (!CONTROL) {
    // 3. Remove a backend: it stops (its sessions end) and the config loses its EndpointSlice.
    const gone = backends[0];
    const pinned = clients.filter((c) => c.backend === gone.name);
    const others = clients.filter((c) => c.backend && c.backend !== gone.name);
    const before = new Map(clients.map((c) => [c, { cookie: cookieOf(c), drops: c.disconnects }]));
    await readStats(gone);
    await stop(gone.child);
    writeConfig(configDir, backends.slice(1));
    const reloaded = await until(
      "reload",
      async () =>
        !new RegExp(`"port":\\s*${gone.port}\\b`).test((await fetchText(`${admin}/debug/routes`)).text),
      10_000,
    );
    check(reloaded, `backend ${gone.name} removed from the configuration and served within 10 s`);
    await until("reconnect", allUp, waitMs);
    const repinned = pinned.filter(
      (c) => c.backend && c.backend !== gone.name && cookieOf(c) && cookieOf(c) !== before.get(c).cookie,
    ).length;
    const undisturbed = others.filter((c) => c.disconnects === before.get(c).drops).length;
    check(
      pinned.length > 0 && repinned === pinned.length && undisturbed === others.length,
      `${repinned}/${pinned.length} clients of ${gone.name} reconnected to another backend with a ` +
        `new cookie; ${undisturbed}/${others.length} other clients kept their sessions`,
    );
    await phase(2);
  }

  for (const b of backends) if (b.child.exitCode === null) await readStats(b);
  const all = [...stats.values()];
  const unknown = all.reduce((s, st) => s + st.sessionUnknown, 0);
  // A "Session ID unknown" is a failure unless its session belonged to the removed backend: the
  // engine.io client's goodbye (a `close` packet POSTed when its poll failed) has nowhere to go.
  const goneSids = new Set(CONTROL ? [] : stats.get(backends[0].name)?.sids ?? []);
  const unknownGone = all.reduce(
    (s, st) => s + st.unknownSids.filter((u) => goneSids.has(u.split(" ")[1])).length,
    0,
  );
  const unknownLive = unknown - unknownGone;
  const goneMethods = [
    ...new Set(all.flatMap((st) => st.unknownSids.filter((u) => goneSids.has(u.split(" ")[1])).map((u) => u.split(" ")[0]))),
  ];
  const errors = {};
  for (const st of all)
    for (const [k, v] of Object.entries(st.connectionErrors)) errors[k] = (errors[k] || 0) + v;
  const sessions = all.reduce((s, st) => s + st.sessions, 0);
  const presented = all.reduce((s, st) => s + st.handshakesWithCookie, 0);
  for (const c of clients) c.close();
  await stop(wsgate);
  for (const b of backends) await stop(b.child);

  const figures =
    `${sessions} sessions opened on the backends (${presented} handshakes presented a ${COOKIE} cookie), ` +
    `"Session ID unknown": ${unknownLive} for live sessions, ${unknownGone} for sessions of the removed backend` +
    (unknownGone ? ` (${goneMethods.join("/")} only: the client's goodbye after its backend died)` : "") +
    `, engine.io connection errors: ${JSON.stringify(errors)}, ` +
    `client connect errors: ${clients.reduce((s, c) => s + c.connectErrors, 0)}, ${((Date.now() - t0) / 1000).toFixed(1)} s`;
  if (CONTROL) {
    // The negative control: the same clients without the affinity cookie must fail.
    const broken = failed > 0 || unknown > 0;
    const observed = results.splice(0).map((l) => `     (control) ${l}`);
    passed = 0;
    failed = 0;
    results.push(...observed);
    check(broken, `negative control without the affinity cookie fails as it should: ${figures}`);
  } else {
    check(unknownLive === 0, `zero "Session ID unknown" for any session whose backend is alive`);
    results.push(`     ${LABEL}: ${figures}`);
  }
}

try {
  await main();
} catch (e) {
  check(false, `scenario error: ${e.message}`);
}
for (const line of results) console.log(line);
killAll();
process.exit(failed > 0 ? 1 : 0);
