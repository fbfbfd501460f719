// Package routeadmin is the operator HTTP API for routes, mounted on a service's admin port:
//
//	GET    /v1/routes        list: {"routes": [route…], "problems": [problem…]}
//	POST   /v1/routes        create from a route object; 201 with Location
//	GET    /v1/routes/{id}   one route
//	PUT    /v1/routes/{id}   create or replace; 201 or 200
//	DELETE /v1/routes/{id}   delete; 204
//
// A route object has the fields of route.Spec (id, pattern, tenant, integration_key, pipeline,
// crm_targets, rules_set, allow_senders, deny_senders, max_size, shadow; updated_at is set by the
// server). Writes return once the route table shows them, so a GET right after sees the change.
//
// Errors are RFC 9457 problem details (application/problem+json). An invalid route gets 422 with
// one entry per problem in "errors", each with a JSON Pointer to the field and what is wrong:
//
//	{"type": "urn:mailpipe:problem:invalid-route", "title": "Invalid route", "status": 422,
//	 "detail": "2 problems: …",
//	 "errors": [{"pointer": "#/tenant", "detail": "must not be empty …"},
//	            {"pointer": "#/crm_targets/0", "detail": "unknown CRM target \"hubsopt\" …"}]}
//
// Other statuses: 400 unreadable JSON, 404 unknown id, 405 wrong method, 409 id already taken
// (POST), 413 body over 1 MiB, 415 not JSON, 503 route table not loaded or the write was not
// acknowledged (retry).
//
// The API has no authentication of its own: like the rest of the admin port, it must be reachable
// by operators only.
package routeadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
)

// Paths served by the handler.
const (
	PathRoutes = "/v1/routes"
	pathRoute  = PathRoutes + "/"
)

// ProblemTypeBase prefixes every problem type the API writes ("urn:mailpipe:problem:invalid-route").
// The types are identifiers for clients to branch on, not documents to fetch (RFC 9457 3.1.1).
const ProblemTypeBase = "urn:mailpipe:problem:"

// Limits of one request.
const (
	maxBody = 1 << 20
	// writeTimeout bounds a write: the produce plus the wait for the table to show it.
	writeTimeout = 30 * time.Second
)

// Problem is an RFC 9457 problem details object as the API writes it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors lists the problems of an invalid route (the extension member RFC 9457 3.2 shows).
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError is one problem of an invalid route.
type FieldError struct {
	// Pointer is a JSON Pointer (RFC 6901) fragment to the field in the request body, "#" for
	// the route as a whole.
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// ListBody is the body of GET /v1/routes.
type ListBody struct {
	Routes []route.Spec `json:"routes"`
	// Problems lists routes on the topic that the table leaves out (invalid, or competing for an
	// address with another route), so an operator sees why a route does not take mail.
	Problems []route.Problem `json:"problems"`
}

// Handler serves the routes API over a store. It is safe for concurrent use.
type Handler struct {
	store *kafkaroute.Store
	log   *slog.Logger
}

// New returns the API handler for store, logging refused and failed requests to log.
func New(store *kafkaroute.Store, log *slog.Logger) (*Handler, error) {
	if store == nil || log == nil {
		return nil, errors.New("configuring the routes API: store and logger are required")
	}
	return &Handler{store: store, log: log}, nil
}

// Mounter is what Register mounts on; *admin.Server and *http.ServeMux fit.
type Mounter interface {
	Handle(pattern string, h http.Handler)
}

// Register mounts the API at /v1/routes and /v1/routes/ on m.
func (h *Handler) Register(m Mounter) {
	m.Handle(PathRoutes, h)
	m.Handle(pathRoute, h)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, one := strings.CutPrefix(r.URL.Path, pathRoute)
	switch {
	case r.URL.Path == PathRoutes:
	case one && id != "" && !strings.Contains(id, "/"):
	default:
		writeProblem(w, http.StatusNotFound, "not-found", "Not found", "the routes API serves "+PathRoutes+" and "+PathRoutes+"/{id}")
		return
	}
	if err := h.store.Check(r.Context()); err != nil {
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Route table not loaded", "the route table is still being read from the topic; retry shortly")
		return
	}
	switch {
	case !one && r.Method == http.MethodGet:
		h.list(w)
	case !one && r.Method == http.MethodPost:
		h.create(w, r)
	case one && r.Method == http.MethodGet:
		h.get(w, id)
	case one && r.Method == http.MethodPut:
		h.put(w, r, id)
	case one && r.Method == http.MethodDelete:
		h.delete(w, r, id)
	default:
		allow := "GET, POST"
		if one {
			allow = "GET, PUT, DELETE"
		}
		w.Header().Set("Allow", allow)
		writeProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "use "+allow)
	}
}

func (h *Handler) list(w http.ResponseWriter) {
	body := ListBody{Routes: []route.Spec{}, Problems: h.store.Problems()}
	for _, r := range h.store.List() {
		body.Routes = append(body.Routes, route.SpecOf(r))
	}
	if body.Problems == nil {
		body.Problems = []route.Problem{}
	}
	writeJSON(w, http.StatusOK, body)
}

func (h *Handler) get(w http.ResponseWriter, id string) {
	rt, ok := h.store.Get(id)
	if !ok {
		writeProblem(w, http.StatusNotFound, "route-not-found", "Route not found", fmt.Sprintf("no route has the id %q", id))
		return
	}
	writeJSON(w, http.StatusOK, route.SpecOf(rt))
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	spec, ok := readSpec(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	rt, err := h.store.Create(ctx, spec.Route())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", pathRoute+url.PathEscape(rt.ID))
	writeJSON(w, http.StatusCreated, route.SpecOf(rt))
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request, id string) {
	spec, ok := readSpec(w, r)
	if !ok {
		return
	}
	if spec.ID != "" && spec.ID != id {
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-route", "Invalid route",
			fmt.Sprintf("the body's id %q differs from the id %q in the path", spec.ID, id),
			FieldError{Pointer: "#/id", Detail: fmt.Sprintf("must be empty or %q, the id in the path", id)})
		return
	}
	spec.ID = id
	_, existed := h.store.Get(id)
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	rt, err := h.store.Put(ctx, spec.Route())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
		w.Header().Set("Location", pathRoute+url.PathEscape(rt.ID))
	}
	writeJSON(w, status, route.SpecOf(rt))
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, id string) {
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	if err := h.store.Delete(ctx, id); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readSpec decodes the request body into a Spec, answering the request itself when it cannot.
func readSpec(w http.ResponseWriter, r *http.Request) (route.Spec, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeProblem(w, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type", "send the route as application/json")
			return route.Spec{}, false
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	var spec route.Spec
	err := dec.Decode(&spec)
	if err == nil {
		if _, e := dec.Token(); !errors.Is(e, io.EOF) {
			err = errors.New("the body holds more than one JSON value")
		}
	}
	var mbe *http.MaxBytesError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		spec.UpdatedAt = nil // set by the store
		return spec, true
	case errors.As(err, &mbe):
		writeProblem(w, http.StatusRequestEntityTooLarge, "too-large", "Body too large", fmt.Sprintf("a route is at most %d bytes of JSON", maxBody))
	case errors.As(err, &te):
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-route", "Invalid route", "a field has the wrong type",
			FieldError{Pointer: pointer(te.Field), Detail: fmt.Sprintf("must be a JSON %s, not %s", jsonType(te.Type.Kind().String()), te.Value)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-route", "Invalid route", fmt.Sprintf("unknown field %q", field),
			FieldError{Pointer: pointer(field), Detail: "unknown field; the fields are id, pattern, tenant, integration_key, pipeline, crm_targets, rules_set, allow_senders, deny_senders, max_size, shadow"})
	default:
		writeProblem(w, http.StatusBadRequest, "bad-json", "Unreadable JSON", err.Error())
	}
	return route.Spec{}, false
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "slice":
		return "array"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	}
	return "number"
}

// writeError answers a store error with the matching problem.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *route.ValidationError
	switch {
	case errors.As(err, &ve):
		fes := make([]FieldError, len(ve.Problems))
		details := make([]string, len(ve.Problems))
		for i, p := range ve.Problems {
			fes[i] = FieldError{Pointer: pointer(p.Field), Detail: p.Detail}
			details[i] = p.String()
		}
		detail := details[0]
		if len(details) > 1 {
			detail = fmt.Sprintf("%d problems: %s", len(details), strings.Join(details, "; "))
		}
		writeProblem(w, http.StatusUnprocessableEntity, "invalid-route", "Invalid route", detail, fes...)
	case errors.Is(err, kafkaroute.ErrExists):
		writeProblem(w, http.StatusConflict, "route-exists", "Route exists",
			err.Error()+"; PUT "+PathRoutes+"/{id} replaces a route")
	case errors.Is(err, kafkaroute.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "route-not-found", "Route not found", err.Error())
	default:
		h.log.ErrorContext(r.Context(), "routes API write failed", slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Not stored, retry later",
			"the route could not be written or confirmed; repeating the request is safe")
	}
}

// pointer turns a Problem field ("crm_targets[1]") into a JSON Pointer fragment ("#/crm_targets/1").
func pointer(field string) string {
	if field == "" {
		return "#"
	}
	field = strings.ReplaceAll(field, "~", "~0")
	field = strings.ReplaceAll(field, "/", "~1")
	field = strings.ReplaceAll(field, "[", "/")
	field = strings.ReplaceAll(field, "]", "")
	field = strings.ReplaceAll(field, ".", "/")
	return "#/" + field
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the status is sent; a broken connection has no one to tell
}

func writeProblem(w http.ResponseWriter, status int, typ, title, detail string, errs ...FieldError) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: ProblemTypeBase + typ, Title: title, Status: status, Detail: detail, Errors: errs})
}
