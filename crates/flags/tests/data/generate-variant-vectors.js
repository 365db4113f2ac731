// Generates variant-vectors.json: the variant point and the chosen variant that a TypeScript
// service computes for each (tenant, flag) pair, using the exact npm package the platform uses:
//
//   point   = murmurhash(tenantId + ":" + flagName) % 100
//   variant = the first variant whose running weight total exceeds point
//
//   mkdir -p /tmp/mm && cd /tmp/mm && npm install murmurhash@2.0.1
//   NODE_PATH=/tmp/mm/node_modules node generate-variant-vectors.js > variant-vectors.json
//
// Inputs are deterministic (no randomness), so the file regenerates byte for byte.
"use strict";
const murmurhash = require("murmurhash");

const flags = [
  { name: "checkout.button", variants: [["blue", 50], ["green", 50]] },
  { name: "search.ranking", variants: [["control", 34], ["bm25", 33], ["semantic", 33]] },
  { name: "matching.ai.boost", variants: [["off", 90], ["on", 10]] },
  { name: "x", variants: [["only", 100]] },
  { name: "pricing.page", variants: [["a", 0], ["b", 25], ["c", 75]] },
];
const tenants = [""];
for (let i = 0; i < 40; i++) tenants.push(`tenant-${i}`);
tenants.push("酒店-上海-001", "東京", "🏨-hotel", "café", " spaced tenant ");
tenants.push("00000000-0000-4000-8000-000000000000", "3f2504e0-4f89-11d3-9a0c-0305e82c3301");

const vectors = [];
for (const flag of flags) {
  for (const tenant of tenants) {
    const hash = murmurhash(tenant + ":" + flag.name);
    const point = hash % 100;
    let upTo = 0;
    const chosen = flag.variants.find(([, weight]) => point < (upTo += weight));
    vectors.push({ tenant, flag: flag.name, hash, point, variant: chosen[0] });
  }
}
process.stdout.write(
  JSON.stringify({ package: "murmurhash@2.0.1", separator: ":", flags, vectors }, null, 1) + "\n",
);
