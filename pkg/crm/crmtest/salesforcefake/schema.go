package salesforcefake

import (
	"strings"
)

// kind is the data type of a field, as describe() reports it.
type kind int

const (
	kString   kind = iota // string, textarea, url, combobox
	kEmail                // email: validated like Salesforce does, ASCII only
	kPicklist             // restricted picklist: values must be in field.values
	kRef                  // reference (lookup): an id of one of field.refTo
	kDate                 // date: YYYY-MM-DD
	kBool
)

// field is one field of an sObject. Names are matched case-insensitively, as the API does.
type field struct {
	name   string
	kind   kind
	maxLen int // characters; 0 means unlimited
	// required: a create without a value (and without a default) is REQUIRED_FIELD_MISSING.
	required bool
	// def is the value set on create when the request does not set the field.
	def any
	// createOnly fields are createable but not updateable (Task.TaskSubtype,
	// ContentVersion.FirstPublishLocationId); readOnly fields are neither.
	createOnly, readOnly bool
	refTo                []string // sObject names a reference may point to
	values               []string // picklist values
	// extID: the field is marked External ID and can key an upsert; unique: it is also
	// Unique (case-insensitive), so inserting a second record with the value is DUPLICATE_VALUE.
	// idLookup: a standard field that can key an upsert without being unique (Contact.Email).
	extID, unique, idLookup bool
}

// sobject is the metadata of one sObject type.
type sobject struct {
	name   string
	prefix string // key prefix of its ids
	fields map[string]*field
	// check runs after the field checks on the record as it would be stored, for rules that
	// span fields (ContentVersion's "ContentUrl or PathOnClient").
	check func(rec map[string]any) *apiError
}

func (o *sobject) field(name string) *field { return o.fields[strings.ToLower(name)] }

func newSObject(name, prefix string, fields ...*field) *sobject {
	o := &sobject{name: name, prefix: prefix, fields: map[string]*field{}}
	for _, f := range append([]*field{{name: "Id", kind: kString, readOnly: true}}, fields...) {
		o.fields[strings.ToLower(f.name)] = f
	}
	return o
}

// The custom External ID fields an org set up for mailpipe holds (see docs/crm/salesforce.md):
// all Text(255), External ID, Unique, case-insensitive.
const (
	// AccountDomainField keys Accounts by company domain.
	AccountDomainField = "Mailpipe_Domain__c"
	// ContactEmailField keys Contacts by normalized sender address.
	ContactEmailField = "Mailpipe_Email__c"
	// ExternalIDField keys Tasks by message external id, and ContentVersions by
	// "<external id>-<n>".
	ExternalIDField = "Mailpipe_External_Id__c"
)

// schema returns the sObjects the fake knows, with the standard fields mailpipe can write and
// their limits as Salesforce's describe reports them, plus the org's custom fields.
func schema() map[string]*sobject {
	ext := func(name string) *field {
		return &field{name: name, kind: kString, maxLen: 255, extID: true, unique: true}
	}
	user := newSObject("User", "005",
		&field{name: "Username", kind: kString, maxLen: 80, readOnly: true},
	)
	account := newSObject("Account", "001",
		&field{name: "Name", kind: kString, maxLen: 255, required: true},
		&field{name: "Website", kind: kString, maxLen: 255},
		&field{name: "Description", kind: kString, maxLen: 32000},
		&field{name: "Industry", kind: kString, maxLen: 255},
		&field{name: "OwnerId", kind: kRef, refTo: []string{"User"}},
		ext(AccountDomainField),
	)
	contact := newSObject("Contact", "003",
		&field{name: "FirstName", kind: kString, maxLen: 40},
		&field{name: "LastName", kind: kString, maxLen: 80, required: true},
		&field{name: "Email", kind: kEmail, maxLen: 80, idLookup: true},
		&field{name: "AccountId", kind: kRef, refTo: []string{"Account"}},
		&field{name: "OwnerId", kind: kRef, refTo: []string{"User"}},
		&field{name: "Description", kind: kString, maxLen: 32000},
		&field{name: "LeadSource", kind: kString, maxLen: 255},
		ext(ContactEmailField),
	)
	task := newSObject("Task", "00T",
		&field{name: "Subject", kind: kString, maxLen: 255},
		&field{name: "Description", kind: kString, maxLen: 32000},
		&field{
			name: "Status", kind: kPicklist, required: true, def: "Not Started",
			values: []string{"Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"},
		},
		&field{name: "Priority", kind: kPicklist, required: true, def: "Normal", values: []string{"High", "Normal", "Low"}},
		&field{name: "Type", kind: kPicklist, values: []string{"Call", "Email", "Meeting", "Other"}},
		&field{name: "TaskSubtype", kind: kPicklist, createOnly: true, values: []string{"Task", "Email", "Call", "ListEmail", "Cadence", "LinkedIn"}},
		&field{name: "ActivityDate", kind: kDate},
		&field{name: "WhoId", kind: kRef, refTo: []string{"Contact", "Lead"}},
		&field{name: "WhatId", kind: kRef, refTo: []string{"Account", "Opportunity", "Case"}},
		&field{name: "OwnerId", kind: kRef, refTo: []string{"User"}},
		ext(ExternalIDField),
	)
	version := newSObject("ContentVersion", "068",
		&field{name: "Title", kind: kString, maxLen: 255},
		&field{name: "ContentUrl", kind: kString, maxLen: 1300},
		&field{name: "PathOnClient", kind: kString, maxLen: 500},
		&field{name: "VersionData", kind: kString},
		&field{name: "Description", kind: kString, maxLen: 1000},
		&field{name: "FirstPublishLocationId", kind: kRef, createOnly: true, refTo: []string{"Account", "Contact", "Task", "User"}},
		&field{name: "ContentDocumentId", kind: kString, readOnly: true},
		ext(ExternalIDField),
	)
	version.check = func(rec map[string]any) *apiError {
		url, path := nonEmpty(rec["ContentUrl"]), nonEmpty(rec["PathOnClient"])
		switch {
		case url && path:
			return &apiError{Message: "ContentUrl and PathOnClient cannot both be set", ErrorCode: "FIELD_INTEGRITY_EXCEPTION", Fields: []string{"ContentUrl", "PathOnClient"}}
		case !url && !path:
			return &apiError{Message: "Required fields are missing: [PathOnClient]", ErrorCode: "REQUIRED_FIELD_MISSING", Fields: []string{"PathOnClient"}}
		case url && !nonEmpty(rec["Title"]):
			// A link has no file name to take the title from.
			return &apiError{Message: "Required fields are missing: [Title]", ErrorCode: "REQUIRED_FIELD_MISSING", Fields: []string{"Title"}}
		}
		return nil
	}
	out := map[string]*sobject{}
	for _, o := range []*sobject{user, account, contact, task, version, newSObject("Lead", "00Q"), newSObject("Opportunity", "006"), newSObject("Case", "500")} {
		out[strings.ToLower(o.name)] = o
	}
	return out
}

func nonEmpty(v any) bool {
	s, ok := v.(string)
	return ok && s != ""
}
