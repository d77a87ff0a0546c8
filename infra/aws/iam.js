// Least-privilege resources from deployment parameters, resolved offline by the framework
// (`${file(infra/aws/iam.js):tables}`): one ARN (and its indexes) per table named in the
// `tables` parameter, the restore targets under `restorePrefix`, and the scratch tables of
// restore drills (`<table>-cloudkeep-drill-<random>`, deleted after each drill).
'use strict';

const tableArn = (name) => ({
  'Fn::Sub': `arn:\${AWS::Partition}:dynamodb:\${AWS::Region}:\${AWS::AccountId}:table/${name}`,
});

async function names(resolveVariable) {
  const raw = await resolveVariable('param:tables');
  const list = Array.isArray(raw) ? raw : String(raw).split(',');
  const out = list.map((s) => String(s).trim()).filter(Boolean);
  if (out.length === 0) throw new Error('the "tables" parameter names no table');
  return out;
}

module.exports = {
  tables: async ({ resolveVariable }) => (await names(resolveVariable)).map(tableArn),
  restoreTables: async ({ resolveVariable }) => {
    const prefix = await resolveVariable('param:restorePrefix');
    return [tableArn(`${prefix}*`), tableArn(`${prefix}*/index/*`)];
  },
  drillTables: async ({ resolveVariable }) => (await names(resolveVariable)).flatMap((name) => [
    tableArn(`${name}-cloudkeep-drill-*`), tableArn(`${name}-cloudkeep-drill-*/index/*`),
  ]),
};
