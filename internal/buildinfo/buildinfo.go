// Package buildinfo says which build a process is: the modelops_build_info
// gauge both servers export, so that a dashboard can tell which version each
// process runs (and a rollout of the binaries can be watched).
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the main module's version as the Go toolchain stamped it (a
// pseudo-version from the VCS commit, "+dirty" for uncommitted changes), or
// "(devel)" when it could not.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Revision is the VCS commit the binary was built from ("" when unknown).
func Revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

// Collector is the gauge modelops_build_info{component, version, revision,
// goversion}, always 1, as Prometheus's own build_info metrics are.
func Collector(component string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelops_build_info",
		Help: "Always 1; the labels say which build this process is.",
		ConstLabels: prometheus.Labels{
			"component": component, "version": Version(), "revision": Revision(), "goversion": runtime.Version(),
		},
	})
	g.Set(1)
	return g
}
