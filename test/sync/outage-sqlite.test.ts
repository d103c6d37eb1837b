// The outage test against the collector's SQLite store, over HTTP (20,000 records and a few
// kills in npm test; SYNC_OUTAGE_RECORDS / SYNC_OUTAGE_KILLS for the long run, npm run test:sync).
import { describe, expect, it } from 'vitest';
import { runOutage } from './outage.js';

const records = Number(process.env.SYNC_OUTAGE_RECORDS ?? 20_000);
const kills = Number(process.env.SYNC_OUTAGE_KILLS ?? 4);

describe('audit sync through an outage, collector on SQLite', () => {
  it(`delivers ${records} records recorded while the collector was down exactly once, in order, verified, through kill -9 of both sides`, async () => {
    const result = await runOutage({ records, kills, batchRecords: records >= 100_000 ? 2000 : 250, timeoutMs: 60_000 + records });
    console.log(`[outage sqlite] ${result.records} records, ${result.checkpoints} checkpoints verified, kills ${JSON.stringify(result.kills)}, seed ${result.seed}`);
    expect(result.records).toBeGreaterThanOrEqual(records);
    expect(result.kills.agent + result.kills.collector).toBeGreaterThanOrEqual(kills);
    expect(result.kills.midDrain).toBeGreaterThanOrEqual(1);
  }, 600_000);
});
