import { nobleVerifier } from '../../src/crypto/noble-verifier.js';
import { verifierSuite } from './verifier.suite.js';

verifierSuite(nobleVerifier);
