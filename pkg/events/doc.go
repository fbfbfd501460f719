// Package events holds the Go types of the Avro records on mailpipe's Kafka topics, one struct per
// topic version (Raw, Parsed, Classified, Enriched, CRMOutcome, LakeRow, Route) and the record
// types they share. The types are generated from schemas/*.avsc by hamba/avro's avrogen and
// committed; run `make generate` after changing a schema and `make check-generated` to see drift.
package events

//go:generate go tool avrogen -pkg events -o events.gen.go -tags json:snake -initialisms DKIM,CRM,TLS,SPF,DMARC,SLA ../../schemas/mail.raw.v1.avsc ../../schemas/mail.parsed.v1.avsc ../../schemas/mail.classified.v1.avsc ../../schemas/mail.enriched.v1.avsc ../../schemas/mail.crm.v1.avsc ../../schemas/mail.lake.v1.avsc ../../schemas/mail.routes.v1.avsc
