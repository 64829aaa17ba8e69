// kafkajs against the StreamHouse Kafka listener: produce with the codecs kafkajs ships
// (none, gzip), consume in a group, commit. One line per produced / consumed record.
const { Kafka, CompressionTypes, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, perCodec] = [process.argv[2], process.argv[3], Number(process.argv[4])];
  const kafka = new Kafka({ clientId: "kafkajs-peer", brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (const [name, codec] of [["none", CompressionTypes.None], ["gzip", CompressionTypes.GZIP]]) {
    for (let i = 0; i < perCodec; i++) {
      const [meta] = await producer.send({
        topic, acks: -1, compression: codec,
        messages: [{ partition: i % 2, key: i % 3 === 0 ? null : `k${i}`, value: `${name}-${i}`,
                     timestamp: String(1700000000000 + i), headers: { h: `x${i}` } }],
      });
      console.log(`produced ${meta.partition} ${meta.baseOffset}`);
    }
  }
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: "kafkajs-group" });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen} records consumed`)), 60000);
    consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        seen++;
        const key = message.key === null ? "<null>" : message.key.toString();
        console.log(`consumed ${partition} ${message.offset} ${message.timestamp} ${key} ${message.value} ${message.headers.h}`);
        await consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }]);
        if (seen === 2 * perCodec) { clearTimeout(timer); resolve(); }
      },
    });
  });
  await consumer.disconnect();
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
