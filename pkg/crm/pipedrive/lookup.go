package pipedrive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Page sizes. Pipedrive caps list pages at 500 items (100 for files). Activity pages use the
// cap: a replay lookup reads all of a person's activities, and every page is one more request
// against the rate limit; our notes are at most ~20 KiB, so a page stays within
// maxResponseBody.
const (
	searchLimit         = "10"
	defaultActivityPage = 500
	fileLimit           = 100
)

// searchResult is the data of /v1/persons/search and /v1/organizations/search.
type searchResult struct {
	Items []struct {
		Item struct {
			ID     int64    `json:"id"`
			Name   string   `json:"name"`
			Emails []string `json:"emails"`
		} `json:"item"`
	} `json:"items"`
}

// knownID returns the CRM id the enricher found for this target and object type, e.g. the
// value of "pipedrive.person".
func knownID(rec *events.Enriched, key string) (int64, bool) {
	v, ok := rec.Enrichment.CRMIds[key]
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(v, 10, 64)
	return id, err == nil && id > 0
}

// organization returns the id of the organization of org, creating it when the search finds
// none.
func (s *session) organization(ctx context.Context, rec *events.Enriched, org company) (int64, error) {
	c := s.c
	if id, ok := knownID(rec, c.name+"."+ObjectOrganization); ok {
		return id, nil
	}
	term, field := org.name, "name"
	if c.cfg.OrgDomainField != "" {
		term, field = org.domain, "custom_fields"
	}
	key := "organization:" + field + ":" + strings.ToLower(term)
	unlock, err := c.locks.lock(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("waiting for another lookup of organization %s: %w", org.domain, err)
	}
	defer unlock()

	var found searchResult
	q := url.Values{"term": {term}, "fields": {field}, "exact_match": {"true"}, "limit": {searchLimit}}
	if err := s.call(ctx, http.MethodGet, "/v1/organizations/search", q, requestBody{}, &found); err != nil {
		return 0, fmt.Errorf("searching organization %s: %w", org.domain, err)
	}
	for _, it := range found.Items {
		// A custom-field search matched the domain exactly; a name search is checked again
		// because names are the weaker key.
		if it.Item.ID > 0 && (field != "name" || strings.EqualFold(it.Item.Name, term)) {
			return it.Item.ID, nil
		}
	}
	if id, ok := c.recent.get(key); ok {
		return id, nil
	}
	body := map[string]any{"name": org.name}
	if c.cfg.OrgDomainField != "" {
		body[c.cfg.OrgDomainField] = org.domain
	}
	var created struct {
		ID int64 `json:"id"`
	}
	if err := s.call(ctx, http.MethodPost, "/v1/organizations", nil, jsonBody(body), &created); err != nil {
		return 0, fmt.Errorf("adding organization %s: %w", org.domain, err)
	}
	if created.ID <= 0 {
		return 0, failure.New(failure.CRM5xx, "adding organization: response has no id")
	}
	c.recent.put(key, created.ID)
	c.log.LogAttrs(ctx, slog.LevelDebug, "added pipedrive organization", slog.Int64("org_id", created.ID))
	return created.ID, nil
}

// person returns the id of the person with the sender's address, creating it (in orgID when
// not 0) when the search finds none. An existing person is not modified.
func (s *session) person(ctx context.Context, rec *events.Enriched, snd sender, orgID int64) (int64, error) {
	c := s.c
	if id, ok := knownID(rec, c.name+"."+ObjectPerson); ok {
		return id, nil
	}
	key := "person:" + snd.email
	unlock, err := c.locks.lock(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("waiting for another lookup of the sender's person: %w", err)
	}
	defer unlock()

	var found searchResult
	q := url.Values{"term": {snd.email}, "fields": {"email"}, "exact_match": {"true"}, "limit": {searchLimit}}
	if err := s.call(ctx, http.MethodGet, "/v1/persons/search", q, requestBody{}, &found); err != nil {
		return 0, fmt.Errorf("searching the sender's person: %w", err)
	}
	for _, it := range found.Items {
		for _, e := range it.Item.Emails {
			if it.Item.ID > 0 && strings.EqualFold(e, snd.email) {
				return it.Item.ID, nil
			}
		}
	}
	if id, ok := c.recent.get(key); ok {
		return id, nil
	}
	body := newPerson(snd, orgID)
	var created struct {
		ID int64 `json:"id"`
	}
	if err := s.call(ctx, http.MethodPost, "/v1/persons", nil, jsonBody(body), &created); err != nil {
		return 0, fmt.Errorf("adding the sender's person: %w", err)
	}
	if created.ID <= 0 {
		return 0, failure.New(failure.CRM5xx, "adding person: response has no id")
	}
	c.recent.put(key, created.ID)
	c.log.LogAttrs(ctx, slog.LevelDebug, "added pipedrive person", slog.Int64("person_id", created.ID))
	return created.ID, nil
}

// findActivity returns the id of the person's activity whose note carries the marker of
// externalID, or 0.
func (s *session) findActivity(ctx context.Context, personID int64, externalID string) (int64, error) {
	marker := NoteMarker(externalID)
	path := "/v1/persons/" + strconv.FormatInt(personID, 10) + "/activities"
	for start := 0; ; {
		// data is null, not [], for a person without activities.
		var acts []struct {
			ID   int64   `json:"id"`
			Note *string `json:"note"`
		}
		q := url.Values{"start": {strconv.Itoa(start)}, "limit": {strconv.Itoa(s.c.activityPage)}}
		page, err := s.callPage(ctx, http.MethodGet, path, q, requestBody{}, &acts)
		if err != nil {
			return 0, fmt.Errorf("listing the activities of person %d: %w", personID, err)
		}
		for _, a := range acts {
			if a.Note != nil && strings.Contains(*a.Note, marker) {
				return a.ID, nil
			}
		}
		if !page.More || page.NextStart <= start {
			return 0, nil
		}
		start = page.NextStart
	}
}

// uploadFiles uploads the message's uploadable attachments to the activity and returns the
// file ids. When the activity existed before (a replay), files already attached to it with the
// same name and size are not uploaded again. An attachment whose blob is gone is skipped with
// a warning: retrying cannot bring it back, and the note still lists it.
func (s *session) uploadFiles(ctx context.Context, rec *events.Enriched, activityID, personID, orgID int64, existed bool) ([]string, error) {
	c := s.c
	atts := uploadable(rec, c.cfg.MaxFileSize)
	if len(atts) == 0 {
		return nil, nil
	}
	type fileKey struct {
		name string
		size int64
	}
	have := map[fileKey]int64{}
	if existed {
		path := "/v1/persons/" + strconv.FormatInt(personID, 10) + "/files"
		for start := 0; ; {
			var files []struct {
				ID         int64  `json:"id"`
				ActivityID int64  `json:"activity_id"`
				FileName   string `json:"file_name"`
				FileSize   int64  `json:"file_size"`
			}
			q := url.Values{"start": {strconv.Itoa(start)}, "limit": {strconv.Itoa(fileLimit)}}
			page, err := s.callPage(ctx, http.MethodGet, path, q, requestBody{}, &files)
			if err != nil {
				return nil, fmt.Errorf("listing the files of person %d: %w", personID, err)
			}
			for _, f := range files {
				if f.ActivityID == activityID {
					have[fileKey{f.FileName, f.FileSize}] = f.ID
				}
			}
			if !page.More || page.NextStart <= start {
				break
			}
			start = page.NextStart
		}
	}
	fields := map[string]string{
		"activity_id": strconv.FormatInt(activityID, 10),
		"person_id":   strconv.FormatInt(personID, 10),
	}
	if orgID > 0 {
		fields["org_id"] = strconv.FormatInt(orgID, 10)
	}
	var ids []string
	for _, a := range atts {
		if id, ok := have[fileKey{a.name, a.size}]; ok {
			ids = append(ids, strconv.FormatInt(id, 10))
			continue
		}
		var created struct {
			ID int64 `json:"id"`
		}
		err := s.call(ctx, http.MethodPost, "/v1/files", nil, fileBody(c.blobs, a.ref, a.name, fields), &created)
		if errors.Is(err, fs.ErrNotExist) {
			c.log.LogAttrs(ctx, slog.LevelWarn, "attachment blob is gone; not uploading it",
				slog.String("external_id", rec.Message.ExternalID), slog.String("sha256", a.sha256))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("uploading attachment %s: %w", a.sha256, err)
		}
		ids = append(ids, strconv.FormatInt(created.ID, 10))
	}
	return ids, nil
}
