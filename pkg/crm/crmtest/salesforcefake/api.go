package salesforcefake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// apiError is one element of the REST API's error body.
type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

var notFound = &apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}

// reply is a handler's answer.
type reply struct {
	status int
	body   any // nil for no body
}

func errReply(status int, e *apiError) reply { return reply{status: status, body: []*apiError{e}} }

// serveAPI is the instance server: the REST API.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	_ = r.Body.Close()
	if err != nil {
		writeErrors(w, http.StatusBadRequest, &apiError{Message: "reading request body", ErrorCode: "JSON_PARSER_ERROR"})
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")

	s.mu.Lock()
	if !ok || !s.sessions[token] {
		s.mu.Unlock()
		writeErrors(w, http.StatusUnauthorized, &apiError{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"})
		return
	}
	s.apiRequests++
	used := s.apiRequests
	over := s.requestLimit > 0 && used > s.requestLimit
	var f *Fault
	if !over && len(s.faults) > 0 && (s.faults[0] == nil || s.faults[0].Method == "" || s.faults[0].Method == r.Method) {
		f, s.faults = s.faults[0], s.faults[1:]
		if f != nil && f.Status == http.StatusUnauthorized {
			delete(s.sessions, token)
		}
	}
	s.mu.Unlock()

	if s.requestLimit > 0 {
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", min(used, s.requestLimit), s.requestLimit))
	}
	if over {
		writeErrors(w, http.StatusForbidden, &apiError{Message: "TotalRequests Limit exceeded.", ErrorCode: "REQUEST_LIMIT_EXCEEDED"})
		return
	}
	if f != nil && !f.AfterCommit {
		writeFault(w, f)
		return
	}
	rep := s.route(r, body)
	if f != nil {
		writeFault(w, f)
		return
	}
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	writeJSON(w, rep.status, rep.body)
}

// route dispatches /services/data/vXX.X/sobjects/Type[/Field/Value | /Id].
func (s *Server) route(r *http.Request, body []byte) reply {
	segs, ok := segments(r.URL.EscapedPath())
	if !ok || len(segs) < 5 || segs[0] != "services" || segs[1] != "data" || segs[3] != "sobjects" {
		return errReply(http.StatusNotFound, notFound)
	}
	version, ok := parseVersion(segs[2])
	if !ok {
		return errReply(http.StatusNotFound, notFound)
	}
	o, ok := s.objects[strings.ToLower(segs[4])]
	if !ok {
		return errReply(http.StatusNotFound, &apiError{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"})
	}
	rest := segs[5:]
	if (r.Method == http.MethodPatch || r.Method == http.MethodPost) && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return errReply(http.StatusUnsupportedMediaType, &apiError{
			Message: fmt.Sprintf("Content type '%s' not supported", r.Header.Get("Content-Type")), ErrorCode: "UNSUPPORTED_MEDIA_TYPE",
		})
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && len(rest) == 0:
		return s.create(o, body, version)
	case r.Method == http.MethodPatch && len(rest) == 2:
		return s.upsert(o, rest[0], rest[1], body, version)
	case r.Method == http.MethodPatch && len(rest) == 1:
		return s.update(o, rest[0], body)
	case r.Method == http.MethodGet && len(rest) == 2:
		return s.getByExternalID(o, rest[0], rest[1], r.URL.Query().Get("fields"), version)
	case r.Method == http.MethodGet && len(rest) == 1:
		rec, ok := s.byID[rest[0]]
		if !ok || rec.obj != o {
			return errReply(http.StatusNotFound, notFound)
		}
		return reply{status: http.StatusOK, body: s.view(rec, r.URL.Query().Get("fields"), version)}
	default:
		return errReply(http.StatusMethodNotAllowed, &apiError{
			Message:   fmt.Sprintf("HTTP Method '%s' not allowed. Allowed are GET,PATCH,POST", r.Method),
			ErrorCode: "METHOD_NOT_ALLOWED",
		})
	}
}

func (s *Server) create(o *sobject, body []byte, version float64) reply {
	in, aerr := decodeBody(body)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	vals, aerr := s.validate(o, in, nil)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	rec := s.insert(o, vals)
	return reply{status: http.StatusCreated, body: saveResult(rec.id, true, version, false)}
}

func (s *Server) upsert(o *sobject, fieldName, value string, body []byte, version float64) reply {
	f := o.field(fieldName)
	if f == nil || (!f.extID && !f.idLookup) {
		return errReply(http.StatusNotFound, &apiError{
			Message:   "Provided external ID field does not exist or is not accessible: " + fieldName,
			ErrorCode: "NOT_FOUND",
		})
	}
	in, aerr := decodeBody(body)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	matches := s.find(o, f, value)
	switch len(matches) {
	case 0:
		// The URL's value is the key of the new record; a different value in the body would
		// make the record unreachable by the key it was upserted with.
		in[f.name] = value
		vals, aerr := s.validate(o, in, nil)
		if aerr != nil {
			return errReply(http.StatusBadRequest, aerr)
		}
		rec := s.insert(o, vals)
		return reply{status: http.StatusCreated, body: saveResult(rec.id, true, version, true)}
	case 1:
		rec := matches[0]
		vals, aerr := s.validate(o, in, rec)
		if aerr != nil {
			return errReply(http.StatusBadRequest, aerr)
		}
		s.setFields(rec, vals)
		if version < 46 {
			return reply{status: http.StatusNoContent}
		}
		return reply{status: http.StatusOK, body: saveResult(rec.id, false, version, true)}
	default:
		urls := make([]string, 0, len(matches))
		for _, m := range matches {
			urls = append(urls, recordURL(m, version))
		}
		return reply{status: http.StatusMultipleChoices, body: urls}
	}
}

// update changes the record with id (PATCH sobjects/Type/Id): 204 without a body.
func (s *Server) update(o *sobject, id string, body []byte) reply {
	rec := s.lookupID(id)
	if rec == nil || rec.obj != o {
		return errReply(http.StatusNotFound, notFound)
	}
	in, aerr := decodeBody(body)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	vals, aerr := s.validate(o, in, rec)
	if aerr != nil {
		return errReply(http.StatusBadRequest, aerr)
	}
	s.setFields(rec, vals)
	return reply{status: http.StatusNoContent}
}

func (s *Server) getByExternalID(o *sobject, fieldName, value, fields string, version float64) reply {
	f := o.field(fieldName)
	if f == nil || (!f.extID && !f.idLookup) {
		return errReply(http.StatusNotFound, &apiError{
			Message:   "Provided external ID field does not exist or is not accessible: " + fieldName,
			ErrorCode: "NOT_FOUND",
		})
	}
	matches := s.find(o, f, value)
	switch len(matches) {
	case 0:
		return errReply(http.StatusNotFound, notFound)
	case 1:
		return reply{status: http.StatusOK, body: s.view(matches[0], fields, version)}
	default:
		urls := make([]string, 0, len(matches))
		for _, m := range matches {
			urls = append(urls, recordURL(m, version))
		}
		return reply{status: http.StatusMultipleChoices, body: urls}
	}
}

// saveResult is the SaveResult / UpsertResult body; created appears in upsert results from API
// 46.0 on.
func saveResult(id string, created bool, version float64, upsert bool) map[string]any {
	out := map[string]any{"id": id, "success": true, "errors": []any{}}
	if upsert && version >= 46 {
		out["created"] = created
	}
	return out
}

func (s *Server) view(rec *record, fields string, version float64) map[string]any {
	out := map[string]any{
		"attributes": map[string]string{"type": rec.obj.name, "url": recordURL(rec, version)},
		"Id":         rec.id,
	}
	if fields == "" {
		for k, v := range rec.fields {
			out[k] = v
		}
		return out
	}
	for name := range strings.SplitSeq(fields, ",") {
		if f := rec.obj.field(strings.TrimSpace(name)); f != nil && f.name != "Id" {
			out[f.name] = rec.fields[f.name]
		}
	}
	return out
}

func recordURL(rec *record, version float64) string {
	return fmt.Sprintf("/services/data/v%.1f/sobjects/%s/%s", version, rec.obj.name, rec.id)
}

// find returns the records of o whose field f equals value, case-insensitively as External ID
// matching is. Key fields are looked up in the index; others are scanned.
func (s *Server) find(o *sobject, f *field, value string) []*record {
	if f.extID || f.idLookup {
		return slices.Clone(s.index[f][strings.ToLower(value)])
	}
	var out []*record
	for _, r := range s.records[strings.ToLower(o.name)] {
		if v, ok := r.fields[f.name].(string); ok && strings.EqualFold(v, value) {
			out = append(out, r)
		}
	}
	return out
}

func (s *Server) insert(o *sobject, vals map[string]any) *record {
	s.seq++
	rec := &record{obj: o, id: newID(o.prefix, s.seq)}
	if o.name == "ContentVersion" {
		s.seq++
		vals["ContentDocumentId"] = newID("069", s.seq)
	}
	s.setFields(rec, vals)
	key := strings.ToLower(o.name)
	s.records[key] = append(s.records[key], rec)
	s.byID[rec.id] = rec
	return rec
}

// setFields replaces rec's field values and keeps the index of its key fields current.
func (s *Server) setFields(rec *record, vals map[string]any) {
	for _, f := range rec.obj.fields {
		if !f.extID && !f.idLookup {
			continue
		}
		if old, ok := rec.fields[f.name].(string); ok {
			k := strings.ToLower(old)
			s.index[f][k] = slices.DeleteFunc(s.index[f][k], func(r *record) bool { return r == rec })
		}
		if v, ok := vals[f.name].(string); ok {
			if s.index[f] == nil {
				s.index[f] = map[string][]*record{}
			}
			k := strings.ToLower(v)
			s.index[f][k] = append(s.index[f][k], rec)
		}
	}
	rec.fields = vals
}

func decodeBody(body []byte) (map[string]any, *apiError) {
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil || in == nil {
		return nil, &apiError{Message: "The request body must be a JSON object", ErrorCode: "JSON_PARSER_ERROR"}
	}
	delete(in, "attributes")
	return in, nil
}

// validate checks the fields of a create (existing nil) or an update and returns the record's
// field values as they would be stored.
func (s *Server) validate(o *sobject, in map[string]any, existing *record) (map[string]any, *apiError) {
	create := existing == nil
	out := map[string]any{}
	if !create {
		out = maps.Clone(existing.fields)
	}
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := in[name]
		f := o.field(name)
		if f == nil {
			return nil, &apiError{Message: fmt.Sprintf("No such column '%s' on sobject of type %s", name, o.name), ErrorCode: "INVALID_FIELD"}
		}
		if f.readOnly || (!create && f.createOnly) {
			return nil, &apiError{
				Message:   fmt.Sprintf("Unable to create/update fields: %s. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", f.name),
				ErrorCode: "INVALID_FIELD_FOR_INSERT_UPDATE", Fields: []string{f.name},
			}
		}
		if v == nil {
			delete(out, f.name)
			continue
		}
		if aerr := s.checkValue(o, f, v); aerr != nil {
			return nil, aerr
		}
		out[f.name] = v
	}
	var missing []string
	for _, f := range sortedFields(o) {
		if _, set := out[f.name]; set {
			continue
		}
		if create && f.def != nil {
			out[f.name] = f.def
			continue
		}
		if f.required {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, &apiError{Message: "Required fields are missing: [" + strings.Join(missing, ", ") + "]", ErrorCode: "REQUIRED_FIELD_MISSING", Fields: missing}
	}
	for _, f := range sortedFields(o) {
		v, ok := out[f.name].(string)
		if !f.unique || !ok || v == "" {
			continue
		}
		for _, other := range s.find(o, f, v) {
			if other != existing {
				return nil, &apiError{
					Message:   fmt.Sprintf("duplicate value found: %s duplicates value on record with id: %s", f.name, other.id),
					ErrorCode: "DUPLICATE_VALUE", Fields: []string{},
				}
			}
		}
	}
	if o.check != nil {
		if aerr := o.check(out); aerr != nil {
			return nil, aerr
		}
	}
	return out, nil
}

func (s *Server) checkValue(o *sobject, f *field, v any) *apiError {
	if f.kind == kBool {
		if _, ok := v.(bool); !ok {
			return &apiError{Message: fmt.Sprintf("Cannot deserialize instance of boolean from %T value", v), ErrorCode: "JSON_PARSER_ERROR"}
		}
		return nil
	}
	str, ok := v.(string)
	if !ok {
		return &apiError{Message: fmt.Sprintf("Cannot deserialize instance of %s from %T value", strings.ToLower(f.name), v), ErrorCode: "JSON_PARSER_ERROR"}
	}
	if f.maxLen > 0 && utf8.RuneCountInString(str) > f.maxLen {
		return &apiError{
			Message:   fmt.Sprintf("%s: data value too large: %s (max length=%d)", f.name, truncate(str, 40), f.maxLen),
			ErrorCode: "STRING_TOO_LONG", Fields: []string{f.name},
		}
	}
	switch f.kind {
	case kEmail:
		if !validEmail(str) {
			return &apiError{Message: fmt.Sprintf("%s: invalid email address: %s", f.name, truncate(str, 80)), ErrorCode: "INVALID_EMAIL_ADDRESS", Fields: []string{f.name}}
		}
	case kPicklist:
		if !slices.Contains(f.values, str) {
			return &apiError{Message: fmt.Sprintf("%s: bad value for restricted picklist field: %s", f.name, str), ErrorCode: "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", Fields: []string{f.name}}
		}
	case kDate:
		if _, err := time.Parse(time.DateOnly, str); err != nil {
			return &apiError{Message: fmt.Sprintf("Cannot deserialize instance of date from VALUE_STRING value %s", str), ErrorCode: "JSON_PARSER_ERROR"}
		}
	case kRef:
		if !validID(str) {
			return &apiError{Message: fmt.Sprintf("%s: id value of incorrect type: %s", f.name, str), ErrorCode: "MALFORMED_ID", Fields: []string{f.name}}
		}
		target := s.lookupID(str)
		if target == nil {
			if !slices.ContainsFunc(f.refTo, func(name string) bool { return s.objects[strings.ToLower(name)].prefix == str[:3] }) {
				return &apiError{Message: fmt.Sprintf("%s: id value of incorrect type: %s", f.name, str), ErrorCode: "FIELD_INTEGRITY_EXCEPTION", Fields: []string{f.name}}
			}
			return &apiError{Message: "invalid cross reference id", ErrorCode: "INVALID_CROSS_REFERENCE_KEY", Fields: []string{f.name}}
		}
		if !slices.Contains(f.refTo, target.obj.name) {
			return &apiError{Message: fmt.Sprintf("%s: id value of incorrect type: %s", f.name, str), ErrorCode: "FIELD_INTEGRITY_EXCEPTION", Fields: []string{f.name}}
		}
	}
	return nil
}

// lookupID finds a record by its 18- or 15-character id.
func (s *Server) lookupID(id string) *record {
	if r, ok := s.byID[id]; ok {
		return r
	}
	if len(id) == 15 {
		return s.byID[id+checksum(id)]
	}
	return nil
}

func sortedFields(o *sobject) []*field {
	out := make([]*field, 0, len(o.fields))
	for _, f := range o.fields {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *field) int { return strings.Compare(a.name, b.name) })
	return out
}

// validEmail approximates Salesforce's e-mail check: ASCII, one @, a local part of the RFC 5322
// atom characters and dots, and a dotted host name.
func validEmail(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || !strings.Contains(domain, ".") {
		return false
	}
	for _, r := range local {
		if r > 127 || (!isAlnum(r) && !strings.ContainsRune(".!#$%&'*+/=?^_`{|}~-", r)) {
			return false
		}
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if r > 127 || (!isAlnum(r) && r != '-') {
				return false
			}
		}
	}
	return true
}

func isAlnum(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

func validID(s string) bool {
	if len(s) != 15 && len(s) != 18 {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) {
			return false
		}
	}
	return true
}

// newID builds an 18-character id: key prefix, a base-62 sequence, and the case-checksum
// suffix Salesforce appends to 15-character ids.
func newID(prefix string, n int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	body := []byte(strings.Repeat("0", 10))
	for i := len(body) - 1; i >= 0 && n > 0; i-- {
		body[i] = digits[n%62]
		n /= 62
	}
	id := prefix + "5g" + string(body)
	return id + checksum(id)
}

// checksum is the 3-character suffix of an 18-character id: one character per 5-character
// chunk, encoding which of its characters are upper-case.
func checksum(id15 string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	out := make([]byte, 3)
	for i := range 3 {
		flags := 0
		for j := range 5 {
			if c := id15[i*5+j]; c >= 'A' && c <= 'Z' {
				flags |= 1 << j
			}
		}
		out[i] = alphabet[flags]
	}
	return string(out)
}

func parseVersion(seg string) (float64, bool) {
	v, ok := strings.CutPrefix(seg, "v")
	if !ok || !strings.Contains(v, ".") {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 20 {
		return 0, false
	}
	return f, true
}

// segments splits an escaped path into unescaped segments, so an external id value may carry
// any character the client escaped.
func segments(escaped string) ([]string, bool) {
	parts := strings.Split(strings.Trim(escaped, "/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, false
		}
		parts[i] = u
	}
	return parts, true
}

func writeFault(w http.ResponseWriter, f *Fault) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	code, msg := f.ErrorCode, f.Message
	if code == "" {
		code, msg = cannedError(f.Status)
	}
	if msg == "" {
		msg = "injected fault"
	}
	writeErrors(w, f.Status, &apiError{Message: msg, ErrorCode: code})
}

// cannedError is the error Salesforce sends with status.
func cannedError(status int) (code, msg string) {
	switch status {
	case http.StatusBadRequest:
		return "INVALID_FIELD", "injected fault"
	case http.StatusUnauthorized:
		return "INVALID_SESSION_ID", "Session expired or invalid"
	case http.StatusForbidden:
		return "API_DISABLED_FOR_ORG", "The REST API is not enabled for this Organization."
	case http.StatusNotFound:
		return "NOT_FOUND", "The requested resource does not exist"
	case http.StatusTooManyRequests:
		return "REQUEST_LIMIT_EXCEEDED", "Too many requests. Retry later."
	case http.StatusInternalServerError:
		return "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)"
	case http.StatusServiceUnavailable:
		return "SERVER_UNAVAILABLE", "Server is temporarily unavailable. Retry later."
	}
	return strings.ToUpper(strings.ReplaceAll(http.StatusText(status), " ", "_")), "injected fault"
}

func writeErrors(w http.ResponseWriter, status int, errs ...*apiError) { writeJSON(w, status, errs) }

func writeOAuth(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "..."
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
