import { nativeVerifier } from '../../src/crypto/native-verifier.js';
import { verifierSuite } from './verifier.suite.js';

verifierSuite(nativeVerifier);
