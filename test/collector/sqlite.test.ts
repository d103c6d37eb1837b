// The collector's behavioural suite on its embedded SQLite store.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { SqliteCollectorStore } from '../../src/collector/sqlite-store.js';
import { collectorSuite } from './collector-suite.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-collector-sqlite-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;

collectorSuite('SQLite', async () => new SqliteCollectorStore(path.join(dir, `collector-${n++}.db`)));
