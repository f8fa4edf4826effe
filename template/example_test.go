package template_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/vitamin-go/vitamin/template"
)

func ExampleNameOf() {
	for _, path := range []string{"example.com/orders", "example.com/order-service/v2", "example.com/2fa"} {
		name, err := template.NameOf(path)
		fmt.Printf("%s: %q %v\n", path, name, err)
	}
	// Output:
	// example.com/orders: "orders" <nil>
	// example.com/order-service/v2: "orderservice" <nil>
	// example.com/2fa: "" template: invalid input: Name = 2fa: derived from the last element of "example.com/2fa" is not a Go identifier (it must start with a letter and not be a keyword): choose another module path
}

func ExampleTemplate_New() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	checkout, _ := filepath.Abs("..") // a Vitamin checkout; or Params.Vitamin: "v0.3.0"
	files, err := (&template.Template{}).New(filepath.Join(dir, "orders"), template.Params{ModulePath: "example.com/orders", Replace: checkout})
	if err != nil {
		panic(err)
	}
	for _, f := range files {
		switch filepath.Dir(f) {
		case "cmd/orders", "api/orders/v1", "deploy/k8s":
			fmt.Println(f)
		}
	}
	// Output:
	// api/orders/v1/orders.pb.go
	// api/orders/v1/orders.proto
	// api/orders/v1/orders_grpc.pb.go
	// cmd/orders/main.go
	// deploy/k8s/deployment.yaml
	// deploy/k8s/hpa.yaml
	// deploy/k8s/pdb.yaml
	// deploy/k8s/service.yaml
}
