// The KurrentDB door through KurrentDB's Node.js client
// (@kurrent/kurrentdb-client, as the tests pin it): appends, loads, $all
// and a persistent subscription; events/s and latency. One client, one
// event loop. Its reads go through the client's native bridge (a Rust
// client), so they show more of the server than the Python client does.
//
// Usage: node bench.mjs HOST:PORT [SCALE]
// The client comes from the test's install (scripts/test runs npm ci).

import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const entry = join(here, "../../crates/quipu/tests/clients/kurrent_node/node_modules/@kurrent/kurrentdb-client/dist/index.js");
const { KurrentDBClient, NO_STREAM, START, jsonEvent, persistentSubscriptionToAllSettingsFromDefaults } = await import(
  pathToFileURL(entry).href
);

const [address, scaleText] = process.argv.slice(2);
const scale = Number(scaleText ?? "1");
const client = KurrentDBClient.connectionString`kurrentdb://${address}?tls=false`;
const data = { amount: 100, currency: "EUR", note: "benchmark payload of about one hundred bytes ....." };

function report(name, count, seconds, latencies) {
  let line = `${name.padEnd(32)} ${Math.round(count / seconds).toLocaleString("en").padStart(10)} events/s  (${count.toLocaleString("en")} in ${seconds.toFixed(2)} s)`;
  if (latencies) {
    const sorted = [...latencies].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
    line += `  p50 ${at(0.5).toFixed(2)} ms  p99 ${at(0.99).toFixed(2)} ms`;
  }
  console.log(line);
}

async function timed(calls, call) {
  const latencies = [];
  const started = performance.now();
  for (let n = 0; n < calls; n++) {
    const began = performance.now();
    await call(n);
    latencies.push(performance.now() - began);
  }
  return [(performance.now() - started) / 1000, latencies];
}

const streams = 100;
const singles = Math.max(100, Math.floor(5000 * scale));
let [seconds, latencies] = await timed(singles, (n) =>
  client.appendToStream(`account-${n % streams}`, jsonEvent({ type: "Deposited", data }), {
    streamState: n < streams ? NO_STREAM : BigInt(Math.floor(n / streams) - 1),
  }),
);
report("append 1 event", singles, seconds, latencies);

const batches = Math.max(10, Math.floor(500 * scale));
[seconds, latencies] = await timed(batches, (n) =>
  client.appendToStream(
    `ledger-${n}`,
    Array.from({ length: 100 }, () => jsonEvent({ type: "Posted", data })),
    { streamState: NO_STREAM },
  ),
);
report("append 100 events", batches * 100, seconds, latencies);

const loads = Math.max(100, Math.floor(2000 * scale));
const perStream = Math.floor(singles / streams);
[seconds, latencies] = await timed(loads, async (n) => {
  for await (const _ of client.readStream(`account-${n % streams}`));
});
report(`load a ${perStream}-event stream`, loads * perStream, seconds, latencies);

let started = performance.now();
let count = 0;
for await (const _ of client.readAll({ fromPosition: START })) count++;
report("read $all", count, (performance.now() - started) / 1000);

await client.createPersistentSubscriptionToAll("bench", persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }));
started = performance.now();
const reader = client.subscribeToPersistentSubscriptionToAll("bench", { bufferSize: 1000 });
let handled = 0;
const total = singles + batches * 100;
for await (const event of reader) {
  await reader.ack(event);
  handled++;
  if (handled === total) break;
}
report("persistent subscription, acked", handled, (performance.now() - started) / 1000);
await client.dispose();
process.exit(0);
