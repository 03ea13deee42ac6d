// Grades pages with the MDN HTTP Observatory's own code and Google's CSP Evaluator; prints JSON on stdout.
//
//   node grade.mjs '{"host": "service.example.com", "address": "127.0.0.1", "httpsPort": 8443,
//                    "httpPort": 8080, "paths": ["/", "/docs"], "stock": false}'
//
// `host` resolves to `address` in this process (the public name the pages are graded for, as a DNS record
// would), everything else resolves as usual. For each path, the Observatory's retriever fetches
// https://host:httpsPort/path (and http://host:httpPort/path for the redirection test), its ten tests run on
// the responses and its grader scores them as its `scan()` does; CSP Evaluator reads the page's CSP header.
// `scan()` itself always fetches https://host/ on port 443: with `"stock": true` it also runs on `/`, so a
// test can check that the per-path grading here gives the library's own result.
// Certificates: set NODE_EXTRA_CA_CERTS to the test CA, so that the Observatory sees a valid chain.

import dns from "node:dns";
import { createRequire } from "node:module";

const options = JSON.parse(process.argv[2]);

const originalLookup = dns.lookup;
dns.lookup = function lookup(hostname, lookupOptions, callback) {
  if (typeof lookupOptions === "function") {
    callback = lookupOptions;
    lookupOptions = {};
  }
  if (hostname !== options.host) {
    return originalLookup.call(this, hostname, lookupOptions, callback);
  }
  const all = typeof lookupOptions === "object" && lookupOptions.all;
  process.nextTick(() =>
    all ? callback(null, [{ address: options.address, family: 4 }]) : callback(null, options.address, 4),
  );
  return {};
};

// Imported once the lookup is in place.
const { retrieve } = await import("@mdn/mdn-http-observatory/src/retriever/retriever.js");
const { scan } = await import("@mdn/mdn-http-observatory/src/scanner/index.js");
const { ALL_TESTS, NUM_TESTS } = await import("@mdn/mdn-http-observatory/src/constants.js");
const grader = await import("@mdn/mdn-http-observatory/src/grader/grader.js");
const { MINIMUM_SCORE_FOR_EXTRA_CREDIT } = await import("@mdn/mdn-http-observatory/src/grader/charts.js");
const require = createRequire(import.meta.url);
const { CspEvaluator } = require("csp_evaluator/dist/evaluator.js");
const { CspParser } = require("csp_evaluator/dist/parser.js");
const { Severity } = require("csp_evaluator/dist/finding.js");

/** The scoring of the Observatory's scan(), on the responses of one path (scan() only takes a hostname). */
async function grade(path) {
  const requests = await retrieve(options.host, {
    httpsPort: String(options.httpsPort),
    httpPort: String(options.httpPort),
    path,
  });
  if (!requests.responses.auto) {
    return { path, error: "The site seems to be down." };
  }
  const results = ALL_TESTS.map((test) => test(requests));
  let testsPassed = 0;
  let scoreWithExtraCredit = 100;
  let uncurvedScore = scoreWithExtraCredit;
  for (const result of results) {
    if (result.result) {
      result.scoreModifier = grader.getScoreModifier(result.result);
      testsPassed += result.pass ? 1 : 0;
      scoreWithExtraCredit += result.scoreModifier;
      if (result.scoreModifier < 0) {
        uncurvedScore += result.scoreModifier;
      }
    }
  }
  const score = uncurvedScore >= MINIMUM_SCORE_FOR_EXTRA_CREDIT ? scoreWithExtraCredit : uncurvedScore;
  const final = grader.getGradeForScore(score);
  return {
    path,
    statusCode: requests.responses.auto.status,
    grade: final.grade,
    score: final.score,
    testsPassed,
    testsQuantity: NUM_TESTS,
    tests: Object.fromEntries(results.map((result) => [result.constructor.name, summary(result)])),
    headers: { ...requests.responses.auto.headers },
    csp: evaluateCsp(requests.responses.auto.headers["content-security-policy"]),
  };
}

function summary(result) {
  return { pass: result.pass, result: result.result, scoreModifier: result.scoreModifier };
}

function evaluateCsp(policy) {
  if (!policy) {
    return null;
  }
  const findings = new CspEvaluator(new CspParser(policy).csp).evaluate();
  return findings.map((finding) => ({
    severity: Severity[finding.severity] ?? String(finding.severity),
    directive: finding.directive,
    value: finding.value ?? null,
    description: finding.description,
  }));
}

const output = { pages: [] };
for (const path of options.paths) {
  output.pages.push(await grade(path));
}
if (options.stock) {
  const result = await scan(options.host);
  output.stock = {
    grade: result.scan.grade,
    score: result.scan.score,
    testsPassed: result.scan.testsPassed,
    tests: Object.fromEntries(Object.entries(result.tests).map(([name, test]) => [name, summary(test)])),
  };
}
console.log(JSON.stringify(output));
