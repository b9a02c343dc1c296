/**
 * `node --import sockguard/register app.js` (or `import 'sockguard/register'` first thing): installs the default
 * layer, built from the environment, so an unmodified application's outbound sockets go through it.
 *
 *   SOCKGUARD_APP_ID, SOCKGUARD_POLICY, SOCKGUARD_IDLE_TIMEOUT_MS   the default layer (see getDefaultLayer())
 *   SOCKGUARD_HTTP      present, with any value (the empty string too): route http/https agents and fetch
 *   SOCKGUARD_LISTEN    'deny': refuse listening servers and specific binds; 'allow' (default)
 *
 * The layer stays installed for the life of the process; getDefaultLayer() returns it (its usage(), close()).
 */
import { codedError, codes, describeValue } from './errors.js';
import { getDefaultLayer } from './layer.js';

const listen = process.env.SOCKGUARD_LISTEN || 'allow';
if (listen !== 'allow' && listen !== 'deny') {
  throw codedError(TypeError, codes.INVALID_OPTION, `SOCKGUARD_LISTEN must be 'allow' or 'deny'. Received ${describeValue(listen)}`);
}
getDefaultLayer().install({ http: process.env.SOCKGUARD_HTTP !== undefined, listen });
