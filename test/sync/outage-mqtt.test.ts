// The outage test over the MQTT transport, through a private broker (Mosquitto when installed):
// batches on <prefix>audit, signed acknowledgements on <prefix>audit/ack; the collector's
// persistent session keeps what the broker holds for it across its kills.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestBroker, startBroker } from '../support/broker.js';
import { runOutage } from './outage.js';

const records = Number(process.env.SYNC_OUTAGE_MQTT_RECORDS ?? 5_000);
const kills = Number(process.env.SYNC_OUTAGE_KILLS ?? 4);

let broker: TestBroker;
beforeAll(async () => {
  broker = await startBroker();
});
afterAll(() => broker?.stop());

describe('audit sync through an outage over MQTT', () => {
  it(`delivers ${records} records recorded while the collector was down exactly once, in order, verified, through kill -9 of both sides`, async () => {
    const result = await runOutage({ records, kills, mqtt: { url: broker.url }, batchRecords: 200, timeoutMs: 120_000 + records });
    console.log(`[outage mqtt/${broker.kind}] ${result.records} records, ${result.checkpoints} checkpoints verified, kills ${JSON.stringify(result.kills)}, seed ${result.seed}`);
    expect(result.records).toBeGreaterThanOrEqual(records);
    expect(result.kills.midDrain).toBeGreaterThanOrEqual(1);
  }, 900_000);
});
