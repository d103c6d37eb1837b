// The RFC 9162 inclusion and consistency vectors (transparency-dev/merkle's testdata), read
// from their copy in the repository (test/vectors/merkle, with its provenance and licence).
import fs from 'node:fs';
import path from 'node:path';

export const MERKLE_VECTORS_DIR = path.resolve(new URL('../..', import.meta.url).pathname, 'test/vectors/merkle/testdata');

export interface InclusionVector {
  file: string;
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

export interface ConsistencyVector {
  file: string;
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

function readAll<T>(kind: 'inclusion' | 'consistency'): T[] {
  const root = path.join(MERKLE_VECTORS_DIR, kind);
  const files = (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith('.json')).sort();
  return files.map((file) => ({ file: `${kind}/${file}`, ...(JSON.parse(fs.readFileSync(path.join(root, file), 'utf8')) as object) }) as T);
}

export const inclusionVectors = (): InclusionVector[] => readAll<InclusionVector>('inclusion');
export const consistencyVectors = (): ConsistencyVector[] => readAll<ConsistencyVector>('consistency');

/** The RFC 6962 test leaves the vectors' trees are built from. */
export const RFC6962_LEAVES: readonly string[] = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
];
