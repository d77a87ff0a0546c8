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

const rdsArn = (kind, name) => ({
  'Fn::Sub': `arn:\${AWS::Partition}:rds:\${AWS::Region}:\${AWS::AccountId}:${kind}:${name}`,
});

async function list(resolveVariable, param) {
  const raw = await resolveVariable(`param:${param}`);
  const items = Array.isArray(raw) ? raw : String(raw).split(',');
  return items.map((s) => String(s).trim()).filter((s) => s && s !== 'none');
}

module.exports = {
  // DynamoDB exports (table/NAME/export/ID) and on-demand backups (table/NAME/backup/ID).
  exportsAndBackups: async ({ resolveVariable }) => (await names(resolveVariable)).flatMap((n) => [
    tableArn(`${n}/export/*`), tableArn(`${n}/backup/*`)]),
  // The RDS instances and clusters named in the rdsInstances / rdsClusters parameters; with
  // none named, an ARN that matches no database (the statement then grants nothing).
  rdsDatabases: async ({ resolveVariable }) => {
    const dbs = (await list(resolveVariable, 'rdsInstances')).map((n) => rdsArn('db', n));
    const clusters = (await list(resolveVariable, 'rdsClusters')).map((n) => rdsArn('cluster', n));
    const out = [...dbs, ...clusters];
    return out.length ? out : [rdsArn('db', 'cloudkeep-no-database')];
  },
  tables: async ({ resolveVariable }) => (await names(resolveVariable)).map(tableArn),
  restoreTables: async ({ resolveVariable }) => {
    const prefix = await resolveVariable('param:restorePrefix');
    return [tableArn(`${prefix}*`), tableArn(`${prefix}*/index/*`)];
  },
  drillTables: async ({ resolveVariable }) => (await names(resolveVariable)).flatMap((name) => [
    tableArn(`${name}-cloudkeep-drill-*`), tableArn(`${name}-cloudkeep-drill-*/index/*`),
  ]),
};
