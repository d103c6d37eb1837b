// The collector's behavioural suite on PostgreSQL: a private server started for this file.
import { afterAll, beforeAll } from 'vitest';
import { PostgresCollectorStore } from '../../src/collector/postgres-store.js';
import { type TestPostgres, startPostgres } from '../support/postgres.js';
import { collectorSuite } from './collector-suite.js';

let server: TestPostgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(() => server?.stop());

collectorSuite('PostgreSQL', async () => PostgresCollectorStore.open(await server.createDatabase()));
