package template_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/service"
)

// TestDeploymentMatchesService checks the skeleton's Deployment against
// package service itself: the probes ask its health paths on the port of
// config.yaml's http_addr, and the grace period covers the preStop sleep
// and Shutdown.Total of the configuration as the service reads it
// (defaults filled in). tools/k8scheck decodes the manifests strictly
// against the Kubernetes API types.
func TestDeploymentMatchesService(t *testing.T) {
	cfgs, err := config.Load(context.Background(), config.Layers{File: "skeleton/config.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	var sc service.Config
	if err := cfgs.Snapshot().Unmarshal("service", &sc); err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(sc, service.WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	sc = svc.Config()
	_, port, _ := net.SplitHostPort(sc.HTTPAddr)

	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Grace      int64 `yaml:"terminationGracePeriodSeconds"`
					Containers []struct {
						Ports []struct {
							Name string `yaml:"name"`
							Port int    `yaml:"containerPort"`
						} `yaml:"ports"`
						Liveness  probe `yaml:"livenessProbe"`
						Readiness probe `yaml:"readinessProbe"`
						Lifecycle struct {
							PreStop struct {
								Sleep struct {
									Seconds int64 `yaml:"seconds"`
								} `yaml:"sleep"`
							} `yaml:"preStop"`
						} `yaml:"lifecycle"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	data, err := os.ReadFile("skeleton/deploy/k8s/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.Port)
	}
	for _, p := range []struct {
		name, path string
		got        probe
	}{{"liveness", service.LivezPath, c.Liveness}, {"readiness", service.ReadyzPath, c.Readiness}} {
		if p.got.HTTPGet.Path != p.path || ports[p.got.HTTPGet.Port] != port {
			t.Errorf("%s probe: GET %s on port %s (%s), want %s on %s", p.name, p.got.HTTPGet.Path, p.got.HTTPGet.Port, ports[p.got.HTTPGet.Port], p.path, port)
		}
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if grace := time.Duration(pod.Grace) * time.Second; grace < preStop+sc.Shutdown.Total() {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + Shutdown.Total %v", grace, preStop, sc.Shutdown.Total())
	}
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}
