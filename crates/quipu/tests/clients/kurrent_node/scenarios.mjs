// KurrentDB's official Node.js client (@kurrent/kurrentdb-client) against
// Quipu's KurrentDB door. Reads go through the client's native bridge (its
// Rust client); appends, subscriptions, deletes and persistent
// subscriptions through grpc-js.
//
// Usage: node scenarios.mjs HOST:PORT
//
// Each scenario is a function; a failed assertion names what differed,
// and the process exits 1 at once.

import assert from "node:assert/strict";

import {
  ANY,
  BACKWARDS,
  END,
  FORWARDS,
  KurrentDBClient,
  NO_STREAM,
  PARK,
  RETRY,
  ROUND_ROBIN,
  START,
  STREAM_EXISTS,
  StreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  eventTypeFilter,
  jsonEvent,
  persistentSubscriptionToAllSettingsFromDefaults,
  persistentSubscriptionToStreamSettingsFromDefaults,
  streamNameFilter,
} from "@kurrent/kurrentdb-client";

const client = KurrentDBClient.connectionString`kurrentdb://${process.argv[2]}?tls=false`;

/** Every event of an async iterable, collected. */
async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

/** A subscription's events, one at a time. Leaving a `for await` loop
 * early would end the subscription, so tests pull from one iterator. */
function puller(subscription) {
  const iterator = subscription[Symbol.asyncIterator]();
  return {
    subscription,
    async take(count) {
      const events = [];
      while (events.length < count) {
        const { value, done } = await iterator.next();
        assert.ok(!done, `the subscription ended after ${events.length} of ${count} events`);
        events.push(value);
      }
      return events;
    },
  };
}

/** Runs `call`, which must throw an error of class `kind`. */
async function refused(call, kind, what) {
  await assert.rejects(call, (error) => {
    assert.ok(error instanceof kind, `${what}: ${error.constructor.name}: ${error.message}`);
    return true;
  });
}

const placed = (n) => jsonEvent({ type: "OrderPlaced", data: { n }, metadata: { by: "node" } });

async function appendsWithEveryExpectedRevision() {
  const first = await client.appendToStream("order-1", placed(1), { streamState: NO_STREAM });
  assert.equal(first.success, true);
  assert.equal(first.nextExpectedRevision, 0n, "the first revision");
  const second = await client.appendToStream("order-1", [placed(2), placed(3)], { streamState: 0n });
  assert.equal(second.nextExpectedRevision, 2n, "after a batch");
  await client.appendToStream("order-1", placed(4), { streamState: STREAM_EXISTS });
  await client.appendToStream("order-1", placed(5), { streamState: ANY });
  await refused(
    () => client.appendToStream("order-1", placed(6), { streamState: 1n }),
    WrongExpectedVersionError,
    "a stale revision",
  );
  await refused(
    () => client.appendToStream("order-1", placed(6), { streamState: NO_STREAM }),
    WrongExpectedVersionError,
    "no_stream on an existing stream",
  );
  await refused(
    () => client.appendToStream("order-404", placed(6), { streamState: STREAM_EXISTS }),
    WrongExpectedVersionError,
    "stream_exists on a missing stream",
  );
  const retried = jsonEvent({ type: "OrderPlaced", data: { n: 9 } });
  await client.appendToStream("order-2", retried, { streamState: NO_STREAM });
  await client.appendToStream("order-2", retried, { streamState: NO_STREAM });
  assert.equal((await collect(client.readStream("order-2"))).length, 1, "a retried append writes nothing");
}

async function appendsToSeveralStreamsAtOnce() {
  const result = await client.multiStreamAppend([
    {
      streamName: "transfer-1",
      expectedState: NO_STREAM,
      events: [jsonEvent({ type: "Debited", data: { n: 1 }, metadata: { by: "node" } })],
    },
    { streamName: "transfer-2", expectedState: ANY, events: [jsonEvent({ type: "Credited", data: { n: 1 } })] },
  ]);
  assert.deepEqual(
    result.responses.map((r) => [r.streamName, r.revision]),
    [
      ["transfer-1", 0n],
      ["transfer-2", 0n],
    ],
  );
  const [credited] = await collect(client.readStream("transfer-2"));
  assert.equal(result.position, credited.event.position.commit, "the session's position is its last event's");
  const [debited] = await collect(client.readStream("transfer-1"));
  assert.deepEqual(debited.event.metadata, { by: "node" }, "properties kept as metadata");
  await refused(
    () =>
      client.multiStreamAppend([
        { streamName: "transfer-3", expectedState: NO_STREAM, events: [jsonEvent({ type: "Debited", data: {} })] },
        { streamName: "transfer-1", expectedState: NO_STREAM, events: [jsonEvent({ type: "Debited", data: {} })] },
      ]),
    WrongExpectedVersionError,
    "a session with a stale expected revision",
  );
  await refused(() => collect(client.readStream("transfer-3")), StreamNotFoundError, "a refused session wrote nothing");
}

async function readsStreamsBothWays() {
  const events = await collect(client.readStream("order-1"));
  assert.deepEqual(events.map((e) => e.event.revision), [0n, 1n, 2n, 3n, 4n]);
  const [first] = events;
  assert.equal(first.event.type, "OrderPlaced");
  assert.equal(first.event.streamId, "order-1");
  assert.equal(first.event.isJson, true);
  assert.deepEqual(first.event.data, { n: 1 });
  assert.deepEqual(first.event.metadata, { by: "node" });
  assert.ok(first.event.position.commit >= 1n, "a commit position");
  assert.ok(Math.abs(new Date(first.event.created).getTime() - Date.now()) < 600_000, "created is now-ish");
  const backwards = await collect(client.readStream("order-1", { direction: BACKWARDS, fromRevision: END, maxCount: 2 }));
  assert.deepEqual(backwards.map((e) => e.event.revision), [4n, 3n]);
  const fromTwo = await collect(client.readStream("order-1", { fromRevision: 2n, maxCount: 2 }));
  assert.deepEqual(fromTwo.map((e) => e.event.revision), [2n, 3n]);
  await refused(() => collect(client.readStream("missing-1")), StreamNotFoundError, "a missing stream");
}

async function readsAllBothWaysAndFiltered() {
  await client.appendToStream("invoice-1", jsonEvent({ type: "InvoiceSent", data: {} }));
  const forwards = await collect(client.readAll({ fromPosition: START, direction: FORWARDS }));
  const mine = forwards.filter((e) => !e.event.streamId.startsWith("$"));
  assert.ok(mine.length >= 7, `$all has what was written: ${mine.length}`);
  const commits = forwards.map((e) => e.event.position.commit);
  assert.deepEqual([...commits].sort((a, b) => (a < b ? -1 : 1)), commits, "$all in commit order");
  const backwards = await collect(client.readAll({ fromPosition: END, direction: BACKWARDS, maxCount: 1 }));
  assert.equal(backwards[0].event.type, "InvoiceSent", "backwards starts at the last event");
  const invoices = await collect(client.readAll({ filter: eventTypeFilter({ prefixes: ["Invoice"] }) }));
  assert.deepEqual(invoices.map((e) => e.event.type), ["InvoiceSent"], "filtered by type");
  const orders = await collect(client.readAll({ filter: streamNameFilter({ prefixes: ["order-1"] }) }));
  assert.equal(orders.length, 5, "filtered by stream prefix");
}

async function subscribesFromHistoryIntoLive() {
  const subscription = client.subscribeToStream("order-1", { fromRevision: START });
  let caughtUp = false;
  subscription.on("caughtUp", () => {
    caughtUp = true;
  });
  const events = puller(subscription);
  const history = await events.take(5);
  assert.deepEqual(history.map((e) => e.event.revision), [0n, 1n, 2n, 3n, 4n]);
  await client.appendToStream("order-1", jsonEvent({ type: "OrderClosed", data: {} }));
  const [live] = await events.take(1);
  assert.equal(live.event.type, "OrderClosed", "a live event");
  assert.ok(caughtUp, "caughtUp came between history and live");
  await subscription.unsubscribe();

  const all = client.subscribeToAll({ fromPosition: START, filter: eventTypeFilter({ prefixes: ["Invoice"] }) });
  const invoices = puller(all);
  const [invoice] = await invoices.take(1);
  assert.equal(invoice.event.type, "InvoiceSent");
  await client.appendToStream("invoice-2", jsonEvent({ type: "InvoicePaid", data: {} }));
  const [paid] = await invoices.take(1);
  assert.equal(paid.event.streamId, "invoice-2", "a live event on $all");
  await all.unsubscribe();
}

async function metadataMaxCount() {
  for (let n = 0; n < 4; n++) await client.appendToStream("order-5", jsonEvent({ type: "Noted", data: { n } }));
  await client.setStreamMetadata("order-5", { maxCount: 2, owner: "ops" });
  const { metadata, metastreamRevision } = await client.getStreamMetadata("order-5");
  assert.equal(metadata.maxCount, 2);
  assert.equal(metadata.owner, "ops");
  const visible = await collect(client.readStream("order-5"));
  assert.deepEqual(visible.map((e) => e.event.revision), [2n, 3n], "maxCount hides older events");
  await client.setStreamMetadata("order-5", { maxCount: 3 }, { streamState: metastreamRevision });
  await refused(
    () => client.setStreamMetadata("order-5", { maxCount: 1 }, { streamState: metastreamRevision }),
    WrongExpectedVersionError,
    "metadata expecting a replaced revision",
  );
  assert.equal((await collect(client.readStream("order-5"))).length, 3);
}

async function deletesAndTombstones() {
  await client.deleteStream("order-2");
  await refused(() => collect(client.readStream("order-2")), StreamNotFoundError, "a deleted stream");
  await client.appendToStream("order-7", jsonEvent({ type: "OrderPlaced", data: {} }));
  await refused(
    () => client.tombstoneStream("order-7", { expectedRevision: 5n }),
    WrongExpectedVersionError,
    "a tombstone expecting the wrong revision",
  );
  await client.tombstoneStream("order-7", { expectedRevision: 0n });
  await refused(() => collect(client.readStream("order-7")), StreamDeletedError, "a tombstoned stream's read");
  await refused(
    () => client.appendToStream("order-7", jsonEvent({ type: "Again", data: {} })),
    StreamDeletedError,
    "a tombstoned stream's append",
  );
}

async function persistentSubscriptions() {
  for (let n = 0; n < 4; n++) await client.appendToStream("job-1", jsonEvent({ type: "Queued", data: { n } }));
  await client.createPersistentSubscriptionToStream(
    "job-1",
    "workers",
    persistentSubscriptionToStreamSettingsFromDefaults({ startFrom: 1n, consumerStrategyName: ROUND_ROBIN }),
  );
  const info = await client.getPersistentSubscriptionToStreamInfo("job-1", "workers");
  assert.equal(info.settings.consumerStrategyName, ROUND_ROBIN);
  const reader = client.subscribeToPersistentSubscriptionToStream("job-1", "workers");
  const deliveries = puller(reader);
  const got = [];
  while (got.length < 4) {
    const [resolved] = await deliveries.take(1);
    got.push(resolved);
    const { revision } = resolved.event;
    if (revision === 2n && resolved.retryCount === 0) await reader.nack(RETRY, "try again", resolved);
    else if (revision === 2n) await reader.ack(resolved);
    else await reader.nack(PARK, "poison", resolved);
  }
  assert.deepEqual(
    got.map((e) => [e.event.revision, e.retryCount]),
    [
      [1n, 0],
      [2n, 0],
      [3n, 0],
      [2n, 1],
    ],
    "from revision 1, the retried event again with its count",
  );
  await reader.unsubscribe();
  // Revisions 1 and 3 are parked. Once every answer is applied, a replay
  // stopping at 1 takes back only the first.
  const settled = async () => {
    for (let tries = 0; tries < 200; tries++) {
      const { stats } = await client.getPersistentSubscriptionToStreamInfo("job-1", "workers");
      if (stats.totalInFlightMessages === 0 && stats.readBufferCount === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail("the group's answers were never all applied");
  };
  await settled();
  await client.replayParkedMessagesToStream("job-1", "workers", { stopAt: 1 });
  const { stats } = await client.getPersistentSubscriptionToStreamInfo("job-1", "workers");
  assert.equal(stats.readBufferCount, 1, "stopAt 1 replays one parked event");
  const again = client.subscribeToPersistentSubscriptionToStream("job-1", "workers");
  const replays = puller(again);
  const [first] = await replays.take(1);
  assert.equal(first.event.revision, 1n, "the oldest parked event first");
  await again.ack(first);
  await client.replayParkedMessagesToStream("job-1", "workers");
  const [second] = await replays.take(1);
  assert.equal(second.event.revision, 3n, "then the rest");
  await again.ack(second);
  await again.unsubscribe();

  await client.createPersistentSubscriptionToAll(
    "auditors",
    persistentSubscriptionToAllSettingsFromDefaults({ startFrom: START }),
    { filter: eventTypeFilter({ prefixes: ["Queued"] }) },
  );
  const all = client.subscribeToPersistentSubscriptionToAll("auditors");
  const queued = await puller(all).take(4);
  assert.deepEqual(queued.map((e) => e.event.streamId), ["job-1", "job-1", "job-1", "job-1"], "filtered $all group");
  await all.ack(...queued);
  await all.unsubscribe();
  // A filter that does not compile is refused, saying so, and creates
  // nothing (the listing below has only the two groups).
  await assert.rejects(
    () =>
      client.createPersistentSubscriptionToAll("bad", persistentSubscriptionToAllSettingsFromDefaults(), {
        filter: eventTypeFilter({ regex: "(" }),
      }),
    (error) => error.message.includes("does not compile"),
  );
  const listed = await client.listAllPersistentSubscriptions();
  assert.deepEqual(listed.map((i) => i.groupName).sort(), ["auditors", "workers"]);
  await client.deletePersistentSubscriptionToStream("job-1", "workers");
  await client.deletePersistentSubscriptionToAll("auditors");
  assert.deepEqual(await client.listAllPersistentSubscriptions(), [], "deleted groups are gone");
}

const scenarios = [
  appendsWithEveryExpectedRevision,
  appendsToSeveralStreamsAtOnce,
  readsStreamsBothWays,
  readsAllBothWaysAndFiltered,
  subscribesFromHistoryIntoLive,
  metadataMaxCount,
  deletesAndTombstones,
  persistentSubscriptions,
];

for (const scenario of scenarios) {
  try {
    await scenario();
    console.log(`ok ${scenario.name}`);
  } catch (error) {
    console.log(`FAIL ${scenario.name}: ${error.stack ?? error}`);
    process.exit(1);
  }
}
await client.dispose();
console.log("ok");
process.exit(0);
