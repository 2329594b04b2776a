// A Socket.IO or engine.io server for tests/socketio/run.sh: `node backend.mjs KIND NAME PORT`
// (KIND socketio | engineio). It greets each client with its NAME, echoes every message with its
// NAME, and serves its counters as JSON on GET /stats: sessions (and their ids), messages each
// way, handshakes that carried the wsgate affinity cookie, and engine.io connection errors by
// message (code 1 is "Session ID unknown": a request of a session this backend never opened).
import http from "node:http";
import { Server } from "socket.io";
import { Server as EngineServer } from "engine.io";

const [kind, name, port] = process.argv.slice(2);
const stats = {
  name,
  sessions: 0,
  messagesIn: 0,
  messagesOut: 0,
  handshakesWithCookie: 0,
  sessionUnknown: 0,
  // Engine.io session ids this backend opened, and those of "Session ID unknown" requests
  // (method and sid): the driver tells a live session sent to the wrong backend from the goodbye
  // of a session whose backend is gone.
  sids: [],
  unknownSids: [],
  connectionErrors: {},
};

const server = http.createServer((req, res) => {
  if (req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(stats));
    return;
  }
  res.writeHead(404);
  res.end();
});

const counted = (request, sid) => {
  stats.sessions++;
  stats.sids.push(sid);
  if ((request.headers.cookie || "").includes("wsgate_affinity=")) stats.handshakesWithCookie++;
};

let engine;
if (kind === "socketio") {
  // Default transports: HTTP long-polling first, then the upgrade to WebSocket.
  const io = new Server(server);
  engine = io.engine;
  io.on("connection", (socket) => {
    counted(socket.request, socket.conn.id);
    socket.emit("hello", name);
    socket.on("msg", (n) => {
      stats.messagesIn++;
      socket.emit("echo", { n, backend: name });
      stats.messagesOut++;
    });
  });
} else if (kind === "engineio") {
  // Long-polling only, no upgrade.
  engine = new EngineServer({ transports: ["polling"], allowUpgrades: false });
  engine.attach(server);
  engine.on("connection", (socket) => {
    counted(socket.request, socket.id);
    socket.send(JSON.stringify({ hello: name }));
    socket.on("message", (data) => {
      stats.messagesIn++;
      const { n } = JSON.parse(data);
      socket.send(JSON.stringify({ n, backend: name }));
      stats.messagesOut++;
    });
  });
} else {
  console.error(`unknown kind ${kind}`);
  process.exit(2);
}

engine.on("connection_error", (err) => {
  stats.connectionErrors[err.message] = (stats.connectionErrors[err.message] || 0) + 1;
  if (err.code === 1) {
    stats.sessionUnknown++;
    const sid = new URL(err.req?.url ?? "/", "http://x").searchParams.get("sid");
    stats.unknownSids.push(`${err.req?.method} ${sid}`);
  }
});

server.listen(Number(port), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => process.exit(0));
