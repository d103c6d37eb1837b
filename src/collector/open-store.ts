// `--db URL`: a PostgreSQL URL (postgres:// or postgresql://) opens the shared store; anything
// else is the path of the embedded SQLite file. The PostgreSQL client (pg) is loaded only then.
import { CollectorStoreError, type CollectorStore } from './store.js';
import { SqliteCollectorStore } from './sqlite-store.js';

export async function openCollectorStore(url: string): Promise<CollectorStore> {
  if (/^postgres(ql)?:\/\//.test(url)) return (await import('./postgres-store.js')).PostgresCollectorStore.open(url);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new CollectorStoreError('COLLECTOR_DB_URL', `--db must be a postgres:// URL or a file path, not ${url.split('://')[0]}://`);
  if (url === '') throw new CollectorStoreError('COLLECTOR_DB_URL', '--db is empty');
  return new SqliteCollectorStore(url);
}
