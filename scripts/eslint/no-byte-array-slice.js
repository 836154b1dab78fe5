// @ts-check
/**
 * Bans `.slice()` on byte arrays (Uint8Array, Buffer, any typed array) in the packages' sources.
 *
 * Links hand packets up as windows into large read slabs (1 MiB for link-tun), and the backing
 * object is a Node Buffer even where the code sees a `Uint8Array`. `Uint8Array#slice` copies,
 * but `Buffer#slice` is a view: a "copy" kept past the batch then pins the whole slab (the IPv6
 * reassembler kept 1 MiB per 56-byte fragment that way). The static type cannot tell the two
 * apart, so neither may be written: say what is meant instead, `subarray()` for a view (which
 * must not outlive the batch) or `new Uint8Array(x.subarray(a, b))` for a copy of one's own.
 *
 * Type-aware: the receiver's type must have `subarray` and `BYTES_PER_ELEMENT` (a typed array
 * or a Buffer); strings and arrays are left alone.
 */

/** @param {import('typescript').Type} type @param {import('typescript').TypeChecker} checker */
function isByteArray(type, checker) {
  if (type.isUnion() || type.isIntersection()) return type.types.some((t) => isByteArray(t, checker));
  const apparent = checker.getApparentType(type);
  return apparent.getProperty('subarray') !== undefined && apparent.getProperty('BYTES_PER_ELEMENT') !== undefined;
}

/** @type {import('eslint').Rule.RuleModule} */
export const noByteArraySlice = {
  meta: {
    type: 'problem',
    docs: { description: 'Disallow .slice() on Uint8Array/Buffer values: a view on a Buffer, a copy on a Uint8Array' },
    messages: {
      slice:
        '`.slice()` on a byte array is a view when the object is a Buffer (as received packets are) and pins its whole backing store. ' +
        'Write `.subarray()` for a view that does not outlive the batch, or `new Uint8Array(x.subarray(a, b))` for a copy of its own.',
    },
    schema: [],
  },
  create(context) {
    const services = context.sourceCode.parserServices;
    if (services?.program == null || services.esTreeNodeToTSNodeMap == null) return {};
    const checker = services.program.getTypeChecker();
    const map = services.esTreeNodeToTSNodeMap;
    return {
      /** @param {import('estree').MemberExpression} node */
      'CallExpression > MemberExpression.callee[computed=false][property.name="slice"]'(node) {
        const type = checker.getTypeAtLocation(map.get(/** @type {never} */ (node.object)));
        if (isByteArray(type, checker)) context.report({ node: node.property, messageId: 'slice' });
      },
    };
  },
};

export default { rules: { 'no-byte-array-slice': noByteArraySlice } };
