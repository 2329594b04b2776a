// Command pause is the pod sandbox ("pause") container of the e2e cluster: it
// holds the pod's namespaces open, reaps orphaned children (it is PID 1 of the
// pod when the PID namespace is shared) and exits on SIGINT or SIGTERM. It is
// built static and packed into registry.k8s.io/pause by images.sh, because no
// registry is reachable to pull the upstream one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
