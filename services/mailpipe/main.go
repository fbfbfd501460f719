// Command mailpipe is the operator CLI: `dev` runs the whole pipeline in one process on embedded
// Kafka and Redis; `send` injects a message; `tail` decodes any topic to JSON lines; `parse` and
// `classify` show what the pipeline makes of a message; `rules` checks and simulates rules
// files; `topics apply` creates and configures the topics; `routes` manages address routes;
// `dlq` lists and replays dead letters; `console` serves the ops console.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mailpipe/mailpipe/pkg/app"
)

func main() { os.Exit(app.Main(run)) }

const usage = `usage: mailpipe <command> [flags]

commands:
  dev            run every stage in one process on embedded Kafka and Redis
  send FILE...   send raw RFC 5322 messages over SMTP (or HTTP with --http)
  tail TOPIC     decode a topic's records to JSON lines
  parse FILE...  print the mail.parsed.v1 record of raw messages as JSON (- for stdin)
  classify FILE... print the mail.classified.v1 record of raw messages as JSON
  rules          check a rules file, or simulate one over a topic's recent records
  topics apply   create missing topics and set their configs
  routes         add, list, show, rm or import address routes (mail.routes.v1)
  lake export    write mail.lake.v1 rows received since a time to Parquet files
  dlq            list, show and replay dead letters; history of replays (mail.dlq.v1)
  console        serve the ops console: overview, message lookup, dead-letter browser

Run 'mailpipe <command> -h' for a command's flags.`

func run(ctx context.Context, env app.Env) error {
	if len(env.Args) == 0 {
		fmt.Fprintln(env.Stderr, usage)
		return app.ConfigError(errors.New("no command given"))
	}
	cmd, rest := env.Args[0], env.Args[1:]
	env.Args = rest
	switch cmd {
	case "dev":
		return runDev(ctx, env)
	case "send":
		return runSend(ctx, env)
	case "tail":
		return runTail(ctx, env)
	case "parse":
		return runParse(ctx, env)
	case "classify":
		return runClassify(ctx, env)
	case "rules":
		return runRules(ctx, env)
	case "topics":
		return runTopics(ctx, env)
	case "routes":
		return runRoutes(ctx, env)
	case "lake":
		return runLake(ctx, env)
	case "dlq":
		return runDLQ(ctx, env)
	case "console":
		return runConsole(ctx, env)
	case "help", "-h", "--help":
		fmt.Fprintln(env.Stdout, usage)
		return nil
	default:
		fmt.Fprintln(env.Stderr, usage)
		return app.ConfigError(fmt.Errorf("unknown command %q", cmd))
	}
}
