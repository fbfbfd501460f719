package mailid_test

import (
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/mailid"
)

func ExampleExternalID() {
	fmt.Println(mailid.MessageID(" <CAFx1.2@Mail.Example.COM> (Gmail)"))
	fmt.Println(mailid.Address(`"Doe, Alice" <Alice@Example.com>`))
	fmt.Println(mailid.ExternalID("<abc@example.com>", "Bob <bob@example.org>"))
	// Output:
	// CAFx1.2@mail.example.com
	// alice@example.com
	// 9f94b4b6c417d3be9f67bedbe31fa714083d2f60e14c6587b6cdcc10281eb5ea
}
