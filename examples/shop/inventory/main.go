package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/vitamin-go/vitamin/examples/shop/platform"
)

func main() {
	port := flag.Int("port", 8081, "port to listen on, on 127.0.0.1")
	id := flag.String("id", "", "instance ID (default inventory-<port>)")
	flag.Parse()
	if *id == "" {
		*id = fmt.Sprintf("inventory-%d", *port)
	}
	ctx := context.Background()
	svc, err := platform.Start(ctx, "inventory", *id)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer svc.Close()

	stock := map[string]int{"tea": 120, "coffee": 80, "cocoa": 0}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
		sku := r.PathValue("sku")
		n, ok := stock[sku]
		if !ok {
			platform.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "unknown sku " + sku})
			return
		}
		svc.Log.InfoContext(r.Context(), "stock asked", "sku", sku, "caller", r.Header.Get("Vitamin-Caller"))
		platform.WriteJSON(w, http.StatusOK, map[string]any{"sku": sku, "available": n, "instance": *id})
	})
	if err := svc.ServeHTTP(ctx, *port, map[string]string{"version": "1.0.0"}, mux); err != nil {
		svc.Log.Error("inventory stopped", "err", err)
		os.Exit(1)
	}
}
