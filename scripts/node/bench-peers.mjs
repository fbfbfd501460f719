#!/usr/bin/env node
// Throughput of one peer MIME parser over a set of messages, for e2e/bench/parsers (make
// bench-parsers), which runs it pinned to one core beside mailpipe's own parser.
//
//   node bench-peers.mjs [--seconds S] [--warmup S] mailparser|postal-mime FILE...
//
// Every file is read into memory first. The parser then parses the whole set, in file order,
// once and for at least --warmup seconds (JIT warm-up), and then again for at least --seconds
// seconds of wall time, counting whole passes only so each pass has the corpus's mix. Each
// parser does its default full parse: mailparser's simpleParser (headers, addresses, text,
// HTML, textAsHtml, attachments with checksums) and postal-mime's PostalMime.parse. A message
// a parser refuses counts as an error and the pass goes on. One JSON object on stdout:
// {parser, version, files, bytes, passes, messages, errors, seconds, cpu_seconds, messages_per_s,
// mb_per_s} with MB = 10^6 bytes of raw message and cpu_seconds the process's processor time
// (every thread: V8's collector and compiler too) over the timed passes.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { simpleParser } from 'mailparser';
import PostalMime from 'postal-mime';

const require = createRequire(import.meta.url);

const parsers = {
  mailparser: (buf) => simpleParser(buf),
  'postal-mime': (buf) => PostalMime.parse(buf),
};

function usage(msg) {
  process.stderr.write(`${msg}\nusage: node bench-peers.mjs [--seconds S] [--warmup S] mailparser|postal-mime FILE...\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let seconds = 3;
let warmup = 1;
while (args.length && args[0].startsWith('--')) {
  const flag = args.shift();
  const value = Number(args.shift());
  if (!Number.isFinite(value) || value < 0) usage(`${flag}: want a number of seconds`);
  if (flag === '--seconds') seconds = value;
  else if (flag === '--warmup') warmup = value;
  else usage(`unknown flag ${flag}`);
}
const name = args.shift();
const parse = parsers[name];
if (!parse) usage(`unknown parser ${JSON.stringify(name)}`);
if (args.length === 0) usage('no files given');

const messages = args.map((f) => readFileSync(f));
const bytes = messages.reduce((n, b) => n + b.length, 0);

let errors = 0;
async function pass() {
  let failed = 0;
  for (const m of messages) {
    try {
      await parse(m);
    } catch {
      failed++;
    }
  }
  return failed;
}

let start = performance.now();
do {
  await pass();
} while (performance.now() - start < warmup * 1000);

let passes = 0;
const cpu0 = process.cpuUsage();
start = performance.now();
let elapsed;
do {
  errors += await pass();
  passes++;
  elapsed = (performance.now() - start) / 1000;
} while (elapsed < seconds);

const cpu = process.cpuUsage(cpu0);
const count = passes * messages.length;
process.stdout.write(
  JSON.stringify({
    parser: name,
    version: require(`${name}/package.json`).version,
    files: messages.length,
    bytes,
    passes,
    messages: count,
    errors: errors / passes,
    seconds: elapsed,
    cpu_seconds: (cpu.user + cpu.system) / 1e6,
    messages_per_s: count / elapsed,
    mb_per_s: (passes * bytes) / 1e6 / elapsed,
  }) + '\n',
);
