// Continuous capture (issue #21), resolved offline by the framework from deployment parameters:
// `${file(infra/aws/capture.js):streamEvents}` is the captureStream function's events — one
// DynamoDB stream event source mapping per ARN in `captureStreams` — and `bucketEvents` the
// captureObjects function's EventBridge rule for the buckets in `captureBuckets`. With `none`
// (the default) the functions have no trigger and the roles name a resource that matches nothing.
'use strict';

async function list(resolveVariable, param) {
  const raw = await resolveVariable(`param:${param}`);
  const items = Array.isArray(raw) ? raw : String(raw).split(',');
  return items.map((s) => String(s).trim()).filter((s) => s && s !== 'none');
}

const STREAM_ARN = /^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:\d{12}:table\/[A-Za-z0-9_.-]{3,255}\/stream\/[0-9A-Za-z:._-]+$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

async function streams(resolveVariable) {
  const arns = await list(resolveVariable, 'captureStreams');
  for (const arn of arns) {
    if (!STREAM_ARN.test(arn)) throw new Error(`captureStreams: ${arn} is not a DynamoDB stream ARN`);
  }
  return arns;
}

async function buckets(resolveVariable) {
  const names = await list(resolveVariable, 'captureBuckets');
  for (const name of names) {
    if (!BUCKET.test(name)) throw new Error(`captureBuckets: ${name} is not an S3 bucket name`);
  }
  return names;
}

module.exports = {
  // The event source mappings: records in shard order (parallelization 1), a batch window,
  // partial batch failures, bisect on error, bounded retries, then the failure destination
  // (CaptureFailureQueue, whose messages the captureFailures function records as gaps).
  streamEvents: async ({ resolveVariable }) => {
    const window = Number(await resolveVariable('param:captureBatchWindow'));
    const retries = Number(await resolveVariable('param:captureRetries'));
    return (await streams(resolveVariable)).map((arn) => ({
      stream: {
        type: 'dynamodb',
        arn,
        batchSize: 1000,
        batchWindow: window,
        startingPosition: 'TRIM_HORIZON',
        parallelizationFactor: 1,
        bisectBatchOnFunctionError: true,
        maximumRetryAttempts: retries,
        maximumRecordAgeInSeconds: -1,
        functionResponseType: 'ReportBatchItemFailures',
        destinations: { onFailure: { arn: { 'Fn::GetAtt': ['CaptureFailureQueue', 'Arn'] }, type: 'sqs' } },
      },
    }));
  },
  // S3 event notifications through EventBridge (the bucket's "Amazon EventBridge" notification
  // destination, which `cloudkeep validate` asks for): one rule for the captured buckets' object
  // created / deleted events, retried for a day, then dead-lettered.
  bucketEvents: async ({ resolveVariable }) => {
    const names = await buckets(resolveVariable);
    if (!names.length) return [];
    return [{
      eventBridge: {
        pattern: {
          source: ['aws.s3'],
          'detail-type': ['Object Created', 'Object Deleted'],
          detail: { bucket: { name: names } },
        },
        retryPolicy: { maximumEventAge: 86400, maximumRetryAttempts: 185 },
        deadLetterQueueArn: { 'Fn::GetAtt': ['DeadLetterQueue', 'Arn'] },
      },
    }];
  },
  // What the backup role may read for capture: the streams, and the captured buckets' versions.
  streamArns: async ({ resolveVariable }) => {
    const arns = await streams(resolveVariable);
    return arns.length ? arns : [{ 'Fn::Sub': 'arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/cloudkeep-no-table/stream/none' }];
  },
  bucketArns: async ({ resolveVariable }) => {
    const names = await buckets(resolveVariable);
    const out = names.flatMap((b) => [{ 'Fn::Sub': `arn:\${AWS::Partition}:s3:::${b}` },
      { 'Fn::Sub': `arn:\${AWS::Partition}:s3:::${b}/*` }]);
    return out.length ? out : [{ 'Fn::Sub': 'arn:${AWS::Partition}:s3:::cloudkeep-no-bucket' }];
  },
};
