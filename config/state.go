package config

// SourceState is one layer of a Config, for an operator's page. It is
// plain data.
type SourceState struct {
	// Name names the layer, as in Rejection.Layer ("file:app.yaml").
	Name string `json:"name"`
	// Live is set for a Source that changes while the service runs.
	Live bool `json:"live"`
	// Stale is set while the source reports that it cannot reach its
	// backend: what it holds may be out of date.
	Stale bool `json:"stale"`
}

// Sources returns the layers of c, lowest first.
func (c *Config) Sources() []SourceState {
	out := make([]SourceState, 0, len(c.layers))
	for _, ly := range c.layers {
		out = append(out, SourceState{Name: ly.name, Live: ly.src != nil, Stale: ly.stale.Load()})
	}
	return out
}
