package salesforce

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
)

// Defaults of [Config].
const (
	DefaultName       = "salesforce"
	DefaultLoginURL   = "https://login.salesforce.com"
	DefaultTimeout    = 10 * time.Second
	DefaultTaskStatus = "Completed"
	// DefaultAPIVersion is the REST API version of every request path (Winter '25). From 46.0
	// on, an upsert that updates answers 200 with the record id; before, it answers an empty
	// 204 and the connector reads the id back, one request more.
	DefaultAPIVersion = "62.0"
)

// Default External ID fields. Each is a custom Text(255) field marked External ID and Unique
// (case-insensitive) that an admin adds once (see docs/crm/salesforce.md).
const (
	DefaultAccountIDField = "Mailpipe_Domain__c"
	DefaultContactIDField = "Mailpipe_Email__c"
	DefaultTaskIDField    = "Mailpipe_External_Id__c"
	DefaultFileIDField    = "Mailpipe_External_Id__c"
)

// Config configures one Salesforce target. Load it with envconf under a section such as
// `env:"CRM_SALESFORCE"` (MAILPIPE_CRM_SALESFORCE_CLIENT_ID, …).
//
// Authentication is one of two OAuth 2.0 flows of a connected app:
//   - JWT bearer (server-to-server, preferred): ClientID, Username and PrivateKeyFile, the key
//     whose certificate is uploaded to the connected app.
//   - refresh token: ClientID, RefreshToken and, when the app requires it, ClientSecret.
//
// Setting both RefreshToken and PrivateKeyFile is an error.
type Config struct {
	// Name is the target name (dedupe namespace, mail.crm.v1 target); default "salesforce".
	Name string `env:"NAME" default:"salesforce" usage:"target name of the Salesforce connector"`
	// LoginURL is the authorization server: https://login.salesforce.com (production),
	// https://test.salesforce.com (sandboxes) or the org's My Domain URL. The token endpoint is
	// LoginURL/services/oauth2/token; API calls go to the instance_url the token names.
	LoginURL string `env:"LOGIN_URL" default:"https://login.salesforce.com" usage:"Salesforce authorization server (login.salesforce.com, test.salesforce.com or My Domain URL)"`
	// Audience is the aud claim of the JWT; empty means LoginURL. With a My Domain LoginURL set
	// it to https://login.salesforce.com (or test.salesforce.com for a sandbox).
	Audience string `env:"AUDIENCE" usage:"aud claim of the JWT bearer assertion; default the login URL"`
	// ClientID is the connected app's consumer key (the JWT's iss). Required.
	ClientID string `env:"CLIENT_ID" usage:"connected app consumer key"`
	// Username is the integration user the JWT's sub names. Required for the JWT bearer flow.
	Username string `env:"USERNAME" usage:"Salesforce username of the integration user (JWT bearer flow)"`
	// PrivateKeyFile is a PEM file holding the RSA private key (PKCS #1 or PKCS #8) that signs
	// the JWT. Required for the JWT bearer flow. It is read once, by New.
	PrivateKeyFile string `env:"PRIVATE_KEY_FILE" usage:"PEM file with the RSA key that signs the JWT bearer assertion"`
	// RefreshToken selects the refresh-token flow.
	RefreshToken string `env:"REFRESH_TOKEN" usage:"OAuth refresh token (refresh-token flow instead of JWT bearer)"`
	// ClientSecret is the consumer secret, sent with the refresh token when set.
	ClientSecret string `env:"CLIENT_SECRET" usage:"connected app consumer secret (refresh-token flow)"`
	// APIVersion is the REST API version, "62.0" by default.
	APIVersion string `env:"API_VERSION" default:"62.0" usage:"Salesforce REST API version, e.g. 62.0"`
	// AccountIDField is the Account External ID field keyed by company domain.
	AccountIDField string `env:"ACCOUNT_ID_FIELD" default:"Mailpipe_Domain__c" usage:"Account External ID field holding the company domain"`
	// ContactIDField is the Contact External ID field keyed by the sender's normalized address.
	// "Email" works too (an idLookup field), but is not unique: a second Contact with the
	// same address makes every upsert fail with 300 (crm_4xx).
	ContactIDField string `env:"CONTACT_ID_FIELD" default:"Mailpipe_Email__c" usage:"Contact External ID field holding the sender address"`
	// TaskIDField is the Task External ID field keyed by the message's external id.
	TaskIDField string `env:"TASK_ID_FIELD" default:"Mailpipe_External_Id__c" usage:"Task External ID field holding the message external id"`
	// FileIDField is the ContentVersion External ID field keyed by "<external id>-<n>". It must
	// be Unique: that is what keeps concurrent deliveries from linking a file twice.
	FileIDField string `env:"FILE_ID_FIELD" default:"Mailpipe_External_Id__c" usage:"ContentVersion External ID (Unique) field keying attachment links"`
	// TaskStatus is the Status of the Task; it must be a value of the org's Task Status picklist.
	TaskStatus string `env:"TASK_STATUS" default:"Completed" usage:"Status picklist value of the Task written per message"`
	// SkipFiles turns attachment links (ContentVersion records) off.
	SkipFiles bool `env:"SKIP_FILES" usage:"do not link attachments as ContentVersion records"`
	// Timeout bounds one HTTP request (token requests included), response included; default 10s.
	Timeout time.Duration `env:"TIMEOUT" default:"10s" usage:"timeout of one Salesforce request"`
}

var (
	apiName        = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	versionPattern = regexp.MustCompile(`^\d+\.\d$`)
)

// Validate reports every problem of c, one per line. It does not read the key file.
func (c Config) Validate() error {
	var errs []error
	if c.LoginURL != "" && !httpURL(c.LoginURL) {
		errs = append(errs, errors.New("login_url must be an absolute http or https URL"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client_id is required"))
	}
	switch {
	case c.RefreshToken != "" && c.PrivateKeyFile != "":
		errs = append(errs, errors.New("set either refresh_token or private_key_file, not both"))
	case c.RefreshToken == "" && c.PrivateKeyFile == "":
		errs = append(errs, errors.New("credentials are required: private_key_file and username (JWT bearer flow) or refresh_token"))
	case c.PrivateKeyFile != "" && c.Username == "":
		errs = append(errs, errors.New("username is required with private_key_file"))
	}
	if c.APIVersion != "" {
		if !versionPattern.MatchString(c.APIVersion) {
			errs = append(errs, fmt.Errorf("api_version %q must look like 62.0", c.APIVersion))
		}
	}
	for _, f := range []struct{ name, value string }{
		{"account_id_field", c.AccountIDField},
		{"contact_id_field", c.ContactIDField},
		{"task_id_field", c.TaskIDField},
		{"file_id_field", c.FileIDField},
	} {
		if f.value != "" && !apiName.MatchString(f.value) {
			errs = append(errs, fmt.Errorf("%s %q is not a field API name", f.name, f.value))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// withDefaults fills the fields a Config built in code may leave empty.
func (c Config) withDefaults() Config {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&c.Name, DefaultName)
	def(&c.LoginURL, DefaultLoginURL)
	// The aud claim is compared as a string: https://login.salesforce.com/ would not match.
	c.LoginURL = strings.TrimSuffix(c.LoginURL, "/")
	def(&c.Audience, c.LoginURL)
	def(&c.APIVersion, DefaultAPIVersion)
	def(&c.AccountIDField, DefaultAccountIDField)
	def(&c.ContactIDField, DefaultContactIDField)
	def(&c.TaskIDField, DefaultTaskIDField)
	def(&c.FileIDField, DefaultFileIDField)
	def(&c.TaskStatus, DefaultTaskStatus)
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

var _ crm.Connector = (*Connector)(nil)
