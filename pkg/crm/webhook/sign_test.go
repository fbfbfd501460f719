package webhook

import "testing"

// The vector of the Standard Webhooks specification's reference libraries.
func TestSignMatchesSpecVector(t *testing.T) {
	key, err := decodeSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := sign([][]byte{key}, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("sign = %q, want %q", got, want)
	}
}

func TestDecodeSecret(t *testing.T) {
	for _, tt := range []struct {
		name   string
		secret string
		ok     bool
	}{
		{"prefixed", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"bare base64", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"not base64", "whsec_%%%", false},
		{"too short", "whsec_c2hvcnQ=", false},
		{"empty", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeSecret(tt.secret); (err == nil) != tt.ok {
				t.Fatalf("decodeSecret(%q) err = %v, want ok %v", tt.secret, err, tt.ok)
			}
		})
	}
}
