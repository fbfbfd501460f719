package localstore_test

import (
	"context"
	"fmt"

	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/localstore"
)

func ExampleStore_Upsert() {
	ctx := context.Background()
	// An empty path keeps entries in memory; `mailpipe dev` passes a file path.
	store, err := localstore.Open("", localstore.WithOnWrite(func(e localstore.Entry) {
		fmt.Println("wrote entry", e.Seq, "kind", e.Kind)
	}))
	if err != nil {
		panic(err)
	}
	defer func() { _ = store.Close(ctx) }()

	msg := crmtest.Message("example")
	for range 2 {
		res, err := store.Upsert(ctx, msg)
		if err != nil {
			panic(err)
		}
		fmt.Println(res.Outcome)
	}
	fmt.Println("entries:", store.Count())
	// Output:
	// wrote entry 1 kind human
	// created
	// unchanged
	// entries: 1
}
