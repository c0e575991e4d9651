// A kinesalite Kinesis API server on the loopback interface only (kinesalite's own CLI listens on every
// interface). Usage: node server.js [PORT]; port 0 picks a free one. Prints {"port": N} once listening.
// Streams live in memory and become ACTIVE at once; the process ends when its stdin closes, so a test run
// that dies leaves no server behind.
const db = require("kinesalite/db");

// kinesalite never answers GetShardIterator AT_TIMESTAMP when no record of the shard arrived at or after
// the timestamp; Kinesis answers an iterator at the shard's tip then, as LATEST. Its action module is
// wrapped (before kinesalite loads it) to answer so.
const actionPath = require.resolve("kinesalite/actions/getShardIterator");
const getShardIterator = require(actionPath);
require.cache[actionPath].exports = function (store, data, cb) {
  if (data.ShardIteratorType !== "AT_TIMESTAMP" || !(data.Timestamp * 1000 <= Date.now())) {
    return getShardIterator(store, data, cb);
  }
  let shardIx;
  try {
    shardIx = db.resolveShardId(data.ShardId).shardIx;
  } catch (e) {
    return getShardIterator(store, data, cb);
  }
  let found = false;
  store
    .getStreamDb(data.StreamName)
    .createReadStream({ gt: db.shardIxToHex(shardIx), lt: db.shardIxToHex(shardIx + 1) })
    .on("data", (item) => {
      found = found || item.value.ApproximateArrivalTimestamp >= data.Timestamp;
    })
    .on("error", () => getShardIterator(store, data, cb))
    .on("end", () => {
      const latest = { ...data, ShardIteratorType: "LATEST" };
      delete latest.Timestamp;
      getShardIterator(store, found ? data : latest, cb);
    });
};

const kinesalite = require("kinesalite");

const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
