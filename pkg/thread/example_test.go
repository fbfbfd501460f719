package thread_test

import (
	"context"
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/thread"
)

func ExampleKey() {
	ctx := context.Background()
	idx := newIndex() // production: redisthread.New(client)
	for _, h := range []thread.Headers{
		{MessageID: "<root@example.com>"},
		{MessageID: "<reply1@example.net>", InReplyTo: "<root@example.com>"},
		{MessageID: "<reply2@example.com>", InReplyTo: "<reply1@example.net>"}, // no References
	} {
		res, err := thread.Key(ctx, h, idx)
		if err != nil {
			fmt.Println("index error, header-only key:", err)
		}
		fmt.Println(res.Key, res.Source)
	}
	// Output:
	// root@example.com message_id
	// root@example.com in_reply_to
	// root@example.com index
}
