package k8scheck

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// skeleton is the template's directory, from this module's.
var skeleton = filepath.Join("..", "..", "template", "skeleton")

// The service's health endpoints (package service: LivezPath, ReadyzPath).
const livez, readyz = "/livez", "/readyz"

// manifests decodes every document of deploy/k8s strictly into the API
// type its apiVersion and kind name.
type manifests struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	pdb        *policyv1.PodDisruptionBudget
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(skeleton, "deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", skeleton, err)
	}
	var m manifests
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s, document %d: %v", file, i, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				m.deployment = &appsv1.Deployment{}
				obj = m.deployment
			case "v1 Service":
				m.service = &corev1.Service{}
				obj = m.service
			case "autoscaling/v2 HorizontalPodAutoscaler":
				m.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
				obj = m.hpa
			case "policy/v1 PodDisruptionBudget":
				m.pdb = &policyv1.PodDisruptionBudget{}
				obj = m.pdb
			default:
				t.Fatalf("%s, document %d: unexpected %s %s", file, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s, document %d (%s): %v", file, i, tm.Kind, err)
			}
		}
	}
	if m.deployment == nil || m.service == nil || m.hpa == nil || m.pdb == nil {
		t.Fatalf("want a Deployment, a Service, a HorizontalPodAutoscaler and a PodDisruptionBudget; got %+v", m)
	}
	return m
}

// serviceConfig is what the manifests must agree with in config.yaml.
type serviceConfig struct {
	Service struct {
		HTTPAddr string            `json:"http_addr"`
		GRPCAddr string            `json:"grpc_addr"`
		Shutdown map[string]string `json:"shutdown"`
	} `json:"service"`
}

func config(t *testing.T) (httpPort, grpcPort int32, shutdown time.Duration) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(skeleton, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c serviceConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	port := func(addr string) int32 {
		_, p, err := net.SplitHostPort(addr)
		n, err2 := strconv.Atoi(p)
		if err != nil || err2 != nil {
			t.Fatalf("config.yaml: bad address %q", addr)
		}
		return int32(n)
	}
	// The phases of service.Shutdown, each of which config.yaml sets.
	for _, phase := range []string{"deregister", "propagation", "consumers", "drain", "close", "telemetry"} {
		d, err := time.ParseDuration(c.Service.Shutdown[phase])
		if err != nil {
			t.Fatalf("config.yaml: service.shutdown.%s: %v", phase, err)
		}
		shutdown += max(d, 0)
	}
	return port(c.Service.HTTPAddr), port(c.Service.GRPCAddr), shutdown
}

func TestManifestsDecodeStrictly(t *testing.T) { load(t) }

func TestProbesAndPorts(t *testing.T) {
	m := load(t)
	httpPort, grpcPort, _ := config(t)
	pod := m.deployment.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	named := map[string]int32{}
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
	}
	if named["http"] != httpPort || named["grpc"] != grpcPort {
		t.Errorf("container ports %v, want http %d and grpc %d as config.yaml says", named, httpPort, grpcPort)
	}
	resolve := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return named[p.StrVal]
		}
		return p.IntVal
	}
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, livez}, {"readiness", c.ReadinessProbe, readyz}, {"startup", c.StartupProbe, livez}} {
		switch {
		case probe.p == nil || probe.p.HTTPGet == nil:
			t.Errorf("%s probe: want an HTTP GET", probe.name)
		case probe.p.HTTPGet.Path != probe.path || resolve(probe.p.HTTPGet.Port) != httpPort:
			t.Errorf("%s probe: GET %s on port %d, want %s on %d", probe.name, probe.p.HTTPGet.Path, resolve(probe.p.HTTPGet.Port), probe.path, httpPort)
		}
	}
	for _, p := range m.service.Spec.Ports {
		if got := resolve(p.TargetPort); got != named[p.Name] || got == 0 {
			t.Errorf("Service port %s targets %v, which is not the container's %s port", p.Name, p.TargetPort.String(), p.Name)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %v: want CPU and memory requests (the HPA scales on CPU) and a memory limit", c.Resources)
	}
}

// TestGracePeriod: Kubernetes sends SIGTERM after the preStop hook and
// SIGKILL when the grace period ends; the service's stop must fit between.
func TestGracePeriod(t *testing.T) {
	m := load(t)
	_, _, shutdown := config(t)
	pod := m.deployment.Spec.Template.Spec
	var preStop time.Duration
	if h := pod.Containers[0].Lifecycle; h == nil || h.PreStop == nil || h.PreStop.Sleep == nil {
		t.Fatal("want a preStop sleep, so that endpoints drop the pod before SIGTERM")
	} else {
		preStop = time.Duration(h.PreStop.Sleep.Seconds) * time.Second
	}
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("want terminationGracePeriodSeconds")
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if grace < preStop+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + the service's shutdown phases %v", grace, preStop, shutdown)
	}
}

func TestSelectors(t *testing.T) {
	m := load(t)
	podLabels := labels.Set(m.deployment.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(m.deployment.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector does not match its pods (%v)", err)
	}
	if !labels.SelectorFromSet(m.service.Spec.Selector).Matches(podLabels) {
		t.Error("the Service does not select the Deployment's pods")
	}
	pdb, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	if err != nil || !pdb.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget does not select the Deployment's pods (%v)", err)
	}
	ref := m.hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != m.deployment.Name {
		t.Errorf("the HorizontalPodAutoscaler scales %s %s, want the Deployment %s", ref.Kind, ref.Name, m.deployment.Name)
	}
	if m.hpa.Spec.MinReplicas == nil || *m.hpa.Spec.MinReplicas < 2 {
		t.Error("minReplicas below 2: the PodDisruptionBudget would block every voluntary eviction")
	}
}

// TestStrictDecoding: the decoding used above refuses a misspelt field,
// which Kubernetes would drop with a warning.
func TestStrictDecoding(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: x\n          livenesProbe: {}\n")
	if err := yaml.UnmarshalStrict(doc, &appsv1.Deployment{}); err == nil {
		t.Error("a misspelt livenessProbe decoded without error")
	}
}
