// A kinesalite Kinesis API server on the loopback interface only (kinesalite's own CLI listens on every
// interface). Usage: node server.js [PORT]; port 0 picks a free one. Prints {"port": N} once listening.
// Streams live in memory and become ACTIVE at once; the process ends when its stdin closes, so a test run
// that dies leaves no server behind.
const kinesalite = require("kinesalite");

const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
