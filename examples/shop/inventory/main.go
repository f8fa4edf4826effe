package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/vitamin-go/vitamin/examples/shop/platform"
	"github.com/vitamin-go/vitamin/service"
)

func main() {
	port := flag.Int("port", 8081, "port to listen on, on 127.0.0.1")
	id := flag.String("id", "", "instance ID (default inventory-<port>)")
	flag.Parse()
	cfg := platform.Config("inventory", *id, *port)

	stock := map[string]int{"tea": 120, "coffee": 80, "cocoa": 0}
	var svc *service.Service
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
		sku := r.PathValue("sku")
		n, ok := stock[sku]
		if !ok {
			platform.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "unknown sku " + sku})
			return
		}
		svc.Logger().InfoContext(r.Context(), "stock asked", "sku", sku, "caller", r.Header.Get("Vitamin-Caller"))
		platform.WriteJSON(w, http.StatusOK, map[string]any{"sku": sku, "available": n, "instance": cfg.InstanceID})
	})

	svc, err := service.New(cfg, service.WithHTTP(mux))
	if err == nil {
		err = svc.Run(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(1)
	}
}
