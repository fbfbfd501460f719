package webhooksig_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

func ExampleSetHeaders() {
	secret, err := webhooksig.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	body := []byte(`{"test": 2432232314}`)
	sent := time.Unix(1614265330, 0)

	h := http.Header{}
	if err := webhooksig.SetHeaders(h, "msg_p5jXN8AQM9LWM0D4loKWxJek", sent, body, secret); err != nil {
		panic(err)
	}
	fmt.Println(h.Get(webhooksig.HeaderSignature))

	v, err := webhooksig.NewVerifier([]webhooksig.Secret{secret}, webhooksig.WithClock(func() time.Time { return sent.Add(time.Minute) }))
	if err != nil {
		panic(err)
	}
	fmt.Println(v.VerifyHeader(h, body))
	// Output:
	// v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
	// <nil>
}
