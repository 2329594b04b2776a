// Command apiserver runs a real kube-apiserver, backed by an embedded etcd, on
// 127.0.0.1 for wsgate's end-to-end tests. No container runtime, kubelet or
// controller-manager is involved: tests create Services together with manual
// EndpointSlices that point at backends on 127.0.0.x.
//
// Everything it needs (serving certificates, a service-account key, static
// bearer tokens, kubeconfigs, etcd data) lives in the state directory given by
// --dir. Files that already exist there are reused, so a stop/start cycle on
// the same directory keeps the data, the port, the CA and the tokens.
//
// Once /readyz answers 200 it prints a single line "READY" on stdout.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// user is one static-token identity written to the token file.
type user struct {
	name   string
	token  string
	groups []string
}

// userFlags collects repeated --token flags.
type userFlags []user

func (u *userFlags) String() string { return fmt.Sprint(len(*u)) }

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]*$`)
var validToken = regexp.MustCompile(`^[A-Za-z0-9._~+/=-]+$`)

// Set parses "user=NAME[,token=TOKEN][,groups=G1;G2]". Without token= a random
// token is generated (or the one from a previous start on the same --dir is
// reused).
func (u *userFlags) Set(v string) error {
	var usr user
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%q: want key=value", kv)
		}
		switch k {
		case "user":
			usr.name = val
		case "token":
			usr.token = val
		case "groups":
			for _, g := range strings.Split(val, ";") {
				if g != "" {
					usr.groups = append(usr.groups, g)
				}
			}
		default:
			return fmt.Errorf("unknown key %q (want user, token, groups)", k)
		}
	}
	if !validName.MatchString(usr.name) {
		return fmt.Errorf("invalid or missing user name %q", usr.name)
	}
	if usr.token != "" && !validToken.MatchString(usr.token) {
		return fmt.Errorf("token for %q has characters not allowed in a bearer token", usr.name)
	}
	for _, g := range usr.groups {
		if !validName.MatchString(g) {
			return fmt.Errorf("invalid group %q", g)
		}
	}
	*u = append(*u, usr)
	return nil
}

func main() {
	// Multi-call: "apiserver kubelet ARGS..." (or a link named kubelet) etc.
	// run the other node components (see components.go); anything else is
	// the apiserver itself.
	if cmd := componentCommand(filepath.Base(os.Args[0])); cmd != nil {
		os.Exit(runComponent(cmd, os.Args[1:]))
	}
	if len(os.Args) > 1 {
		if cmd := componentCommand(os.Args[1]); cmd != nil {
			os.Exit(runComponent(cmd, os.Args[2:]))
		}
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("apiserver", flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory (created if missing); required")
	port := fs.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0: reuse the port of a previous start on --dir if free, else pick a free one)")
	etcdPort := fs.Int("etcd-port", 0, "embedded etcd client port (0: pick a free one)")
	etcdPeerPort := fs.Int("etcd-peer-port", 0, "embedded etcd peer port (0: pick a free one)")
	verbosity := fs.Int("v", 0, "kube-apiserver log verbosity")
	readyTimeout := fs.Duration("ready-timeout", 3*time.Minute, "give up if /readyz is not OK within this time")
	var users userFlags
	fs.Var(&users, "token", "extra static-token user: user=NAME[,token=TOKEN][,groups=G1;G2] (repeatable). "+
		"A user \"wsgate\" with no groups is always present unless given here too.")
	nodeIP := fs.String("node-ip", "", "cluster mode: listen on all addresses of the (private) network namespace, advertise this "+
		"address, publish the kubernetes Service endpoints and enable ServiceAccount admission (for a node with a kubelet)")
	serviceCIDR := fs.String("service-cidr", "10.96.0.0/16", "--service-cluster-ip-range; in cluster mode its first address is a SAN of the serving certificate")
	var extra stringList
	fs.Var(&extra, "apiserver-arg", "extra kube-apiserver argument, e.g. --apiserver-arg=--v=2 (repeatable)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required")
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(d, "users"), 0o700); err != nil {
		return err
	}

	// Ports.
	if *port == 0 {
		if b, err := os.ReadFile(filepath.Join(d, "port")); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && portFree(p) {
				*port = p
			}
		}
	}
	for _, p := range []*int{port, etcdPort, etcdPeerPort} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				return err
			}
		}
	}
	if err := writeFile(filepath.Join(d, "port"), []byte(strconv.Itoa(*port)+"\n"), 0o644); err != nil {
		return err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", *port)

	// Certificates and keys.
	sans := []net.IP{net.ParseIP("10.96.0.1")}
	if *nodeIP != "" {
		ip := net.ParseIP(*nodeIP)
		if ip == nil {
			return fmt.Errorf("--node-ip %q is not an IP address", *nodeIP)
		}
		first, err := firstServiceIP(*serviceCIDR)
		if err != nil {
			return err
		}
		sans = []net.IP{ip, first}
	}
	caPEM, err := ensurePKI(d, sans)
	if err != nil {
		return err
	}

	// Static tokens. The admin is in system:masters, which RBAC always allows.
	all := []user{{name: "admin", groups: []string{"system:masters"}}}
	haveWsgate := false
	for _, u := range users {
		if u.name == "admin" {
			return errors.New("--token user=admin is reserved for the built-in admin")
		}
		haveWsgate = haveWsgate || u.name == "wsgate"
	}
	if !haveWsgate {
		all = append(all, user{name: "wsgate"})
	}
	all = append(all, users...)
	var tokens bytes.Buffer
	for i := range all {
		u := &all[i]
		tokPath := filepath.Join(d, "users", u.name+".token")
		if u.token == "" {
			if b, err := os.ReadFile(tokPath); err == nil && validToken.Match(bytes.TrimSpace(b)) {
				u.token = string(bytes.TrimSpace(b))
			} else {
				u.token = randomToken()
			}
		}
		if err := writeFile(tokPath, []byte(u.token+"\n"), 0o600); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(d, "users", u.name+".kubeconfig"), kubeconfig(server, caPEM, u.name, u.token), 0o600); err != nil {
			return err
		}
		// token,user,uid,"group1,group2"
		fmt.Fprintf(&tokens, "%s,%s,%s", u.token, u.name, u.name)
		if len(u.groups) > 0 {
			fmt.Fprintf(&tokens, ",\"%s\"", strings.Join(u.groups, ","))
		}
		tokens.WriteByte('\n')
	}
	tokenFile := filepath.Join(d, "tokens.csv")
	if err := writeFile(tokenFile, tokens.Bytes(), 0o600); err != nil {
		return err
	}
	adminToken := all[0].token
	if err := writeFile(filepath.Join(d, "kubeconfig"), kubeconfig(server, caPEM, "admin", adminToken), 0o600); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(d, "ready"))

	// Embedded etcd.
	etcd, err := startEtcd(d, *etcdPort, *etcdPeerPort)
	if err != nil {
		return err
	}
	defer etcd.Close()

	// kube-apiserver, in this process.
	bind, advertise, reconciler := "127.0.0.1", "127.0.0.1", "none"
	if *nodeIP != "" {
		// The namespace is private, so all of its addresses are: pods reach the
		// apiserver through the kubernetes Service (kube-proxy DNAT to nodeIP).
		bind, advertise, reconciler = "0.0.0.0", *nodeIP, "lease"
	}
	args := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", *etcdPort),
		"--bind-address=" + bind,
		fmt.Sprintf("--secure-port=%d", *port),
		"--advertise-address=" + advertise,
		"--endpoint-reconciler-type=" + reconciler,
		"--authorization-mode=RBAC",
		"--token-auth-file=" + tokenFile,
		"--tls-cert-file=" + filepath.Join(d, "pki", "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(d, "pki", "serving.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(d, "pki", "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(d, "pki", "sa.key"),
		"--service-cluster-ip-range=" + *serviceCIDR,
		"--profiling=false",
		"--event-ttl=10m",
		fmt.Sprintf("--v=%d", *verbosity),
	}
	if *nodeIP == "" {
		// No controller-manager runs, so no "default" ServiceAccount is ever
		// created; this plugin would then reject every Pod.
		args = append(args, "--disable-admission-plugins=ServiceAccount")
	}
	args = append(args, extra...)
	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()

	if err := waitReady(server, caPEM, adminToken, *readyTimeout, done); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(d, "ready"), []byte(server+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Println("READY")
	os.Stdout.Sync()

	// Runs until SIGTERM/SIGINT, which kube-apiserver's own signal handler
	// turns into a graceful shutdown.
	err = <-done
	_ = os.Remove(filepath.Join(d, "ready"))
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func startEtcd(d string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "e2e"
	cfg.Dir = filepath.Join(d, "etcd")
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	// Test data: no fsync, small quota, frequent compaction.
	cfg.UnsafeNoFsync = true
	cfg.QuotaBackendBytes = 512 << 20
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
	cfg.SnapshotCount = 10000
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd was not ready within 60s")
	}
}

func waitReady(server string, caPEM []byte, token string, timeout time.Duration, done <-chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("exited")
			}
			return fmt.Errorf("kube-apiserver stopped before it was ready: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
	}
	return fmt.Errorf("/readyz not OK within %s; last: %s", timeout, last)
}

// ensurePKI creates (or reuses) a CA, a serving certificate for 127.0.0.1 and
// localhost signed by it, and the service-account signing key. It returns the
// CA certificate in PEM. sans are the extra IP SANs of the serving
// certificate (the first Service IP, and the node address in cluster mode).
func ensurePKI(d string, sans []net.IP) ([]byte, error) {
	p := filepath.Join(d, "pki")
	if err := os.MkdirAll(p, 0o700); err != nil {
		return nil, err
	}
	caCrt, caKey := filepath.Join(p, "ca.crt"), filepath.Join(p, "ca.key")
	srvCrt, srvKey := filepath.Join(p, "serving.crt"), filepath.Join(p, "serving.key")
	saKey, saPub := filepath.Join(p, "sa.key"), filepath.Join(p, "sa.pub")

	if !exists(caCrt, caKey, srvCrt, srvKey) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		caTmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "wsgate-e2e-ca"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
		if err != nil {
			return nil, err
		}
		ca, _ := x509.ParseCertificate(caDER)
		skey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		srvTmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: "kube-apiserver"},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local"},
			IPAddresses: append([]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, sans...),
		}
		srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &skey.PublicKey, key)
		if err != nil {
			return nil, err
		}
		for _, f := range []struct {
			path string
			typ  string
			der  []byte
		}{
			{caKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)},
			{srvKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(skey)},
			{caCrt, "CERTIFICATE", caDER},
			{srvCrt, "CERTIFICATE", srvDER},
		} {
			if err := writeFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
				return nil, err
			}
		}
	}
	if !exists(saKey, saPub) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return nil, err
		}
		if err := writeFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
			return nil, err
		}
		if err := writeFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
			return nil, err
		}
	}
	caPEM, err := os.ReadFile(caCrt)
	if err != nil {
		return nil, err
	}
	// Also at the top level, for curl --cacert and similar.
	if err := writeFile(filepath.Join(d, "ca.crt"), caPEM, 0o644); err != nil {
		return nil, err
	}
	return caPEM, nil
}

func kubeconfig(server string, caPEM []byte, name, token string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: %s@e2e
  context:
    cluster: e2e
    user: %s
    namespace: default
current-context: %s@e2e
preferences: {}
`, server, base64.StdEncoding.EncodeToString(caPEM), name, token, name, name, name))
}

func exists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// writeFile writes atomically so a reader never sees a half-written file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// firstServiceIP is the address kube-apiserver gives the kubernetes Service:
// the network address of cidr plus one.
func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("--service-cidr: %w", err)
	}
	ip := n.IP.To4()
	if ip == nil {
		return nil, fmt.Errorf("--service-cidr %q: only IPv4 is supported", cidr)
	}
	first := make(net.IP, 4)
	copy(first, ip)
	first[3]++
	return first, nil
}
