// The outage test against the collector's PostgreSQL store (a private server for this file).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestPostgres, startPostgres } from '../support/postgres.js';
import { runOutage } from './outage.js';

const records = Number(process.env.SYNC_OUTAGE_RECORDS ?? 20_000);
const kills = Number(process.env.SYNC_OUTAGE_KILLS ?? 4);

let server: TestPostgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(() => server?.stop());

describe('audit sync through an outage, collector on PostgreSQL', () => {
  it(`delivers ${records} records recorded while the collector was down exactly once, in order, verified, through kill -9 of both sides`, async () => {
    const result = await runOutage({ records, kills, db: await server.createDatabase(), batchRecords: records >= 100_000 ? 2000 : 250, timeoutMs: 60_000 + records });
    console.log(`[outage postgres] ${result.records} records, ${result.checkpoints} checkpoints verified, kills ${JSON.stringify(result.kills)}, seed ${result.seed}`);
    expect(result.records).toBeGreaterThanOrEqual(records);
    expect(result.kills.midDrain).toBeGreaterThanOrEqual(1);
  }, 900_000);
});
