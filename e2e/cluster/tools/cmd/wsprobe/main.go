// Command wsprobe is the cluster suite's WebSocket client: one echo check
// (ws or wss), or many long-lived sessions that reconnect when closed and
// count how each session ended, for rollouts and pod kills.
//
//	wsprobe echo -url ws://ADDR/PATH [-host H] [-ca FILE] [-n 5]
//	wsprobe hold -url ws://ADDR/PATH [-host H] -sessions 200 -stop-file F -out F.json
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wsprobe echo|hold [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "echo":
		err = echo(os.Args[2:])
	case "hold":
		err = hold(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsprobe:", err)
		os.Exit(1)
	}
}

// target is where and how to connect.
type target struct {
	url, host, ca string
}

func (t *target) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.url, "url", "", "ws:// or wss:// URL (the Service address)")
	fs.StringVar(&t.host, "host", "", "Host header and TLS server name (default: the URL's host)")
	fs.StringVar(&t.ca, "ca", "", "PEM CA file that must have signed the wss server certificate")
}

func (t *target) dialer() (*websocket.Dialer, http.Header, error) {
	d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	h := http.Header{}
	if t.host != "" {
		h.Set("Host", t.host)
	}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%s: no PEM certificate", t.ca)
		}
		d.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: t.host, MinVersion: tls.VersionTLS12}
	}
	return d, h, nil
}

// echo opens one session, checks n echoed messages and closes with 1000.
func echo(args []string) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	var t target
	t.flags(fs)
	n := fs.Int("n", 5, "messages to send and expect back")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, h, err := t.dialer()
	if err != nil {
		return err
	}
	c, resp, err := d.Dial(t.url, h)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("handshake: %v (HTTP %d)", err, resp.StatusCode)
		}
		return fmt.Errorf("handshake: %v", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < *n; i++ {
		msg := fmt.Sprintf("echo-%d-%d", i, time.Now().UnixNano())
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if string(got) != msg {
			return fmt.Errorf("echo mismatch: sent %q, got %q", msg, got)
		}
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(2*time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == 1000 {
				break
			}
			return fmt.Errorf("closing: expected 1000 back, got %v", err)
		}
	}
	fmt.Printf("echo ok: %d messages\n", *n)
	return nil
}

// stats are the counters of a hold run, written as JSON.
type stats struct {
	mu sync.Mutex
	// Sessions opened for the first time.
	Initial int `json:"initial"`
	// Successful reconnects after a close.
	Reconnects int `json:"reconnects"`
	// Closes received from the server, by close code (1006 = no close frame, or a
	// connection cut inside a frame).
	Closes map[string]int `json:"closes"`
	// Handshakes answered with a non-101 status, by status.
	HandshakeStatus map[string]int `json:"handshake_status"`
	// Dial/handshake errors without an HTTP response (refused, reset, timeout).
	ConnectErrors int `json:"connect_errors"`
	// Echoed messages that differ from what was sent.
	EchoMismatch int `json:"echo_mismatch"`
	// Messages echoed correctly.
	Messages int `json:"messages"`
	// Sessions that could not reconnect within -reconnect-timeout.
	Unrecovered int `json:"unrecovered"`
	// Sessions open when the run ended.
	OpenAtEnd int `json:"open_at_end"`
	// Reconnects per second since the start, and the largest second.
	PerSecond     []int `json:"reconnects_per_second"`
	PeakPerSecond int   `json:"reconnect_peak_per_second"`
	// Seconds from the first to the last close of the run (how long closes spread over).
	CloseWindowSeconds float64 `json:"close_window_seconds"`
	firstClose         time.Time
	lastClose          time.Time
	start              time.Time
}

func (s *stats) closed(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Closes[strconv.Itoa(code)]++
	now := time.Now()
	if s.firstClose.IsZero() {
		s.firstClose = now
	}
	s.lastClose = now
}

func (s *stats) reconnected() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Reconnects++
	sec := int(time.Since(s.start).Seconds())
	for len(s.PerSecond) <= sec {
		s.PerSecond = append(s.PerSecond, 0)
	}
	s.PerSecond[sec]++
	if s.PerSecond[sec] > s.PeakPerSecond {
		s.PeakPerSecond = s.PerSecond[sec]
	}
}

func (s *stats) add(f func(*stats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// hold keeps -sessions sessions open, each sending a message every -interval
// and checking the echo, reconnecting whenever the server closes one, until
// -stop-file exists or -max-duration passes.
func hold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	var t target
	t.flags(fs)
	n := fs.Int("sessions", 200, "sessions to keep open")
	interval := fs.Duration("interval", time.Second, "time between messages of one session")
	stopFile := fs.String("stop-file", "", "stop when this file exists")
	readyFile := fs.String("ready-file", "", "created once every session has opened (never, if one cannot)")
	maxDur := fs.Duration("max-duration", 5*time.Minute, "stop after this long in any case")
	reconnectTimeout := fs.Duration("reconnect-timeout", 60*time.Second, "give up reconnecting one session after this long")
	out := fs.String("out", "", "write the counters here as JSON (default stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, h, err := t.dialer()
	if err != nil {
		return err
	}
	st := &stats{Closes: map[string]int{}, HandshakeStatus: map[string]int{}, start: time.Now()}
	stop := make(chan struct{})
	var opened sync.WaitGroup
	opened.Add(*n)
	var wg sync.WaitGroup
	var open sync.Map
	for i := 0; i < *n; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			session(id, d, h, t.url, *interval, *reconnectTimeout, st, stop, &opened, &open)
		}(i)
		time.Sleep(5 * time.Millisecond) // no thundering herd at the start
	}
	go func() {
		opened.Wait()
		if *readyFile != "" {
			_ = os.WriteFile(*readyFile, []byte("ready\n"), 0o644)
		}
	}()
	deadline := time.Now().Add(*maxDur)
	for time.Now().Before(deadline) {
		if *stopFile != "" {
			if _, err := os.Stat(*stopFile); err == nil {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	open.Range(func(_, _ any) bool { st.add(func(s *stats) { s.OpenAtEnd++ }); return true })
	close(stop)
	wg.Wait()
	if !st.firstClose.IsZero() {
		st.CloseWindowSeconds = st.lastClose.Sub(st.firstClose).Seconds()
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if *out == "" {
		fmt.Println(string(b))
		return nil
	}
	return os.WriteFile(*out, append(b, '\n'), 0o644)
}

// session is one client: connect, echo until closed, reconnect.
func session(id int, d *websocket.Dialer, h http.Header, url string, interval, reconnectTimeout time.Duration,
	st *stats, stop <-chan struct{}, opened *sync.WaitGroup, open *sync.Map) {
	first := true
	for {
		c := dialRetry(d, h, url, reconnectTimeout, st, stop)
		if c == nil {
			// A session that never opened leaves -ready-file unwritten.
			select {
			case <-stop:
			default:
				st.add(func(s *stats) { s.Unrecovered++ })
			}
			return
		}
		if first {
			st.add(func(s *stats) { s.Initial++ })
			opened.Done()
			first = false
		} else {
			st.reconnected()
		}
		open.Store(id, true)
		stopped := run(id, c, interval, st, stop)
		open.Delete(id)
		if stopped {
			return
		}
	}
}

func dialRetry(d *websocket.Dialer, h http.Header, url string, timeout time.Duration, st *stats, stop <-chan struct{}) *websocket.Conn {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil
		default:
		}
		c, resp, err := d.Dial(url, h)
		if err == nil {
			return c
		}
		if resp != nil {
			code := strconv.Itoa(resp.StatusCode)
			st.add(func(s *stats) { s.HandshakeStatus[code]++ })
		} else {
			st.add(func(s *stats) { s.ConnectErrors++ })
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// run echoes on c until the server closes it (false) or stop (true, after a
// clean 1000 close from this side).
func run(id int, c *websocket.Conn, interval time.Duration, st *stats, stop <-chan struct{}) bool {
	defer c.Close()
	sent := make(chan string, 64)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, got, err := c.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			want := <-sent
			if string(got) != want {
				st.add(func(s *stats) { s.EchoMismatch++ })
			} else {
				st.add(func(s *stats) { s.Messages++ })
			}
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	seq := 0
	var writeMu sync.Mutex
	for {
		select {
		case err := <-readErr:
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				st.closed(ce.Code)
			} else {
				st.closed(websocket.CloseAbnormalClosure)
			}
			return false
		case <-stop:
			writeMu.Lock()
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(2*time.Second))
			writeMu.Unlock()
			select {
			case <-readErr:
			case <-time.After(3 * time.Second):
			}
			return true
		case <-tick.C:
			seq++
			m := fmt.Sprintf("s%d-%d", id, seq)
			select {
			case sent <- m:
			default:
				continue // the reader is far behind; skip a beat rather than block
			}
			writeMu.Lock()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			err := c.WriteMessage(websocket.TextMessage, []byte(m))
			writeMu.Unlock()
			if err != nil {
				// The read side reports how the session ended.
				continue
			}
		}
	}
}
