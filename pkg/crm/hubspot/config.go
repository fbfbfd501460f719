package hubspot

import (
	"errors"
	"net/url"
	"regexp"
	"time"
)

// Defaults of [Config].
const (
	DefaultName               = "hubspot"
	DefaultBaseURL            = "https://api.hubapi.com"
	DefaultTimeout            = 10 * time.Second
	DefaultExternalIDProperty = "mailpipe_external_id"
	DefaultIDCacheTTL         = 10 * time.Minute
	// MaxBatchSize is HubSpot's limit of inputs per batch call, and the default of
	// Config.BatchSize.
	MaxBatchSize = 100
)

// propertyName is the shape HubSpot accepts for an internal property name.
var propertyName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,99}$`)

// Config configures one HubSpot target. Load it with envconf under a section such as
// `env:"HUBSPOT"` (MAILPIPE_HUBSPOT_TOKEN, …).
//
// Authentication is either a private-app access token (Token) or an OAuth app's refresh token
// (ClientID, ClientSecret and RefreshToken); exactly one of the two must be set. The token needs
// write access to contacts and companies (crm.objects.contacts.write,
// crm.objects.companies.write), the scopes HubSpot's emails reference lists for creating and
// reading email engagements, and a properties write scope when CreateProperty is on.
type Config struct {
	// Name is the target name (dedupe namespace, mail.crm.v1 target); default "hubspot". The
	// connector does not read Enrichment.CRMIds: it finds contacts by email and companies by
	// domain itself, so a stale id from the enrichment cannot misdirect a write.
	Name string `env:"NAME" default:"hubspot" usage:"target name of the HubSpot connector"`
	// BaseURL is the API root; default https://api.hubapi.com. The OAuth token endpoint is
	// BaseURL + /oauth/v1/token.
	BaseURL string `env:"BASE_URL" default:"https://api.hubapi.com" usage:"HubSpot API base URL"`
	// Token is a private-app access token, sent as a bearer token. It does not expire; a 401 with
	// it is an auth failure.
	Token string `env:"TOKEN" usage:"HubSpot private-app access token (or use the OAuth client and refresh token)"`
	// ClientID, ClientSecret and RefreshToken are an OAuth app's credentials and the refresh
	// token of the installing account. The connector exchanges the refresh token for access
	// tokens (grant_type=refresh_token) before they expire and again after a 401.
	ClientID     string `env:"CLIENT_ID" usage:"HubSpot OAuth app client id"`
	ClientSecret string `env:"CLIENT_SECRET" usage:"HubSpot OAuth app client secret"`
	RefreshToken string `env:"REFRESH_TOKEN" usage:"HubSpot OAuth refresh token of the account written to"`
	// Timeout bounds one HTTP request, response included; default 10s. One upsert makes several
	// requests (see the package doc).
	Timeout time.Duration `env:"TIMEOUT" default:"10s" usage:"timeout of one HubSpot API request"`
	// ExternalIDProperty is the custom email-engagement property holding the message's external
	// id, the idempotency key; default mailpipe_external_id. Lower-case letters, digits and
	// underscores, starting with a letter.
	ExternalIDProperty string `env:"EXTERNAL_ID_PROPERTY" default:"mailpipe_external_id" usage:"custom email property holding the external id"`
	// CreateProperty makes the connector create ExternalIDProperty (a text property with unique
	// values) on first use when the account lacks it; default true. Turn it off when the token
	// has no schema scope, and create the property beforehand (docs/crm/hubspot.md).
	CreateProperty bool `env:"CREATE_PROPERTY" default:"true" usage:"create the external id property on first use if missing"`
	// AssociateContactCompany associates the contact with the company (HubSpot's default
	// association) when the message has both; default true. It costs one request per message
	// whose pair was not associated by this process within IDCacheTTL.
	AssociateContactCompany bool `env:"ASSOCIATE_CONTACT_COMPANY" default:"true" usage:"associate the contact with its company"`
	// BatchSize caps the contacts sent in one batch upsert; default and maximum 100 (HubSpot's
	// limit). Concurrent upserts share a batch; a lone upsert sends a batch of one.
	BatchSize int `env:"BATCH_SIZE" default:"100" usage:"contacts per batch upsert, at most 100"`
	// IDCacheTTL is how long the connector remembers company ids by domain and the email ids it
	// wrote by external id; default 10m, 0 turns the memory off. HubSpot's search index lags
	// writes by seconds, and companies have no unique key, so without it two messages from a new
	// company a second apart can create two companies.
	IDCacheTTL time.Duration `env:"ID_CACHE_TTL" default:"10m" usage:"how long company and email ids are remembered (bridges search-index lag); 0 disables"`
}

// Validate reports every problem of c, one per line.
func (c Config) Validate() error {
	var errs []error
	if c.BaseURL != "" {
		if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("base url must be an absolute http or https URL"))
		}
	}
	oauth := c.ClientID != "" || c.ClientSecret != "" || c.RefreshToken != ""
	switch {
	case c.Token == "" && !oauth:
		errs = append(errs, errors.New("credentials: set the private-app token or the OAuth client id, client secret and refresh token"))
	case c.Token != "" && oauth:
		errs = append(errs, errors.New("credentials: the private-app token and the OAuth client conflict; set one of them"))
	case oauth && (c.ClientID == "" || c.ClientSecret == "" || c.RefreshToken == ""):
		errs = append(errs, errors.New("credentials: OAuth needs the client id, the client secret and the refresh token"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if c.ExternalIDProperty != "" && !propertyName.MatchString(c.ExternalIDProperty) {
		errs = append(errs, errors.New("external id property must be lower-case letters, digits and underscores, starting with a letter"))
	}
	if c.BatchSize < 0 || c.BatchSize > MaxBatchSize {
		errs = append(errs, errors.New("batch size must be between 1 and 100 (0 for the default)"))
	}
	if c.IDCacheTTL < 0 {
		errs = append(errs, errors.New("id cache ttl must not be negative"))
	}
	return errors.Join(errs...)
}

// oauth reports whether c authenticates with an OAuth refresh token.
func (c Config) oauth() bool { return c.Token == "" }
