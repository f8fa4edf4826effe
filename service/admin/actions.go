package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/resilience"
)

var (
	attrAction  = attribute.Key("action")
	attrOutcome = attribute.Key("outcome")
	attrReason  = attribute.Key("reason")
)

// credentialField is the form field of the page's actions.
const credentialField = "credential"

// ActionResult is the answer to an action, in JSON.
type ActionResult struct {
	// OK is set when the action was done; Status is its HTTP status.
	OK     bool   `json:"ok"`
	Status int    `json:"status"`
	Action string `json:"action"`
	// Message says what was done, or why not.
	Message string `json:"message"`
}

// authorized lets a request through only with the credential: 401
// without one, 403 with a wrong one or when none is configured.
func (s *Server) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token == "" {
			s.refused(w, r, http.StatusForbidden, "actions are disabled: no admin token is configured (Admin.Token or "+TokenEnv+")")
			return
		}
		got := ""
		if h := r.Header.Get("Authorization"); h != "" {
			got, _ = strings.CutPrefix(h, "Bearer ")
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, 4096)
			got = r.PostFormValue(credentialField)
		}
		switch {
		case got == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="vitamin admin"`)
			s.refused(w, r, http.StatusUnauthorized, "a credential is required")
		case subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1:
			s.refused(w, r, http.StatusForbidden, "wrong credential")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// actionName names the action of r's path for logs and metrics, before
// and after routing.
func actionName(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/v1/breakers/"):
		switch a := p[strings.LastIndexByte(p, '/')+1:]; a {
		case "open", "close", "reset":
			return "breaker." + a
		}
	case strings.HasSuffix(p, "/clear-ejection"):
		return "clear-ejection"
	}
	return "unknown"
}

func (s *Server) refused(w http.ResponseWriter, r *http.Request, status int, why string) {
	a := actionName(r)
	s.inst.action(a, "refused")
	s.log.Warn("admin: action refused", "action", a, "path", r.URL.Path, "remote", r.RemoteAddr, "status", status, "why", why)
	answerAction(w, r, ActionResult{Status: status, Action: a, Message: why})
}

func (s *Server) breakerAction(w http.ResponseWriter, r *http.Request) {
	policy, action := r.PathValue("policy"), r.PathValue("action")
	var open bool
	switch action {
	case "open":
		open = true
	case "close", "reset":
	default:
		s.answered(w, r, http.StatusNotFound, `unknown action: want "open", "close" or "reset"`, nil)
		return
	}
	err := resilience.ErrNoBreaker
	for _, reg := range s.o.policies {
		if err = reg.ForceCircuit(policy, open); err == nil {
			break
		}
	}
	if err != nil {
		s.answered(w, r, http.StatusNotFound, "", err)
		return
	}
	state := "closed"
	if open {
		state = "open"
	}
	s.answered(w, r, http.StatusOK, "circuit breaker "+policy+" forced "+state, nil)
}

func (s *Server) clearEjection(w http.ResponseWriter, r *http.Request) {
	service, id := r.PathValue("service"), r.PathValue("id")
	if s.o.clients == nil {
		s.answered(w, r, http.StatusNotFound, "no clients are monitored", nil)
		return
	}
	if err := s.o.clients.ClearEjection(service, id); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, client.ErrNotEjected) {
			status = http.StatusNotFound
		}
		s.answered(w, r, status, "", err)
		return
	}
	s.answered(w, r, http.StatusOK, "instance "+id+" of "+service+" back in rotation", nil)
}

// answered answers an authorized action and logs it.
func (s *Server) answered(w http.ResponseWriter, r *http.Request, status int, msg string, err error) {
	a := actionName(r)
	res := ActionResult{OK: status == http.StatusOK, Status: status, Action: a, Message: msg}
	if err != nil {
		res.Message = err.Error()
	}
	if res.OK {
		s.inst.action(a, "done")
		s.log.Warn("admin: action done", "action", a, "path", r.URL.Path, "remote", r.RemoteAddr, "result", res.Message)
	} else {
		s.inst.action(a, "failed")
		s.log.Info("admin: action failed", "action", a, "path", r.URL.Path, "status", status, "why", res.Message)
	}
	answerAction(w, r, res)
}

// answerAction answers JSON, or, to a plain form post from the page
// without script (a browser navigation), sends it back to the page when
// the action was done.
func answerAction(w http.ResponseWriter, r *http.Request, res ActionResult) {
	if res.OK && r.Header.Get("Sec-Fetch-Mode") == "navigate" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(res.Status)
	_ = json.NewEncoder(w).Encode(res)
}
