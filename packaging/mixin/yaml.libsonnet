// A YAML writer for the rendered rule files, in place of
// std.manifestYamlDoc: Debian's jsonnet (C++ 0.18) runs that, and
// std.escapeStringJson under it, in jsonnet code a character at a time,
// 20 s of CPU for the rule file; this uses only built-ins (split, join,
// strReplace) and takes a fraction of a second. It also keeps the fields of a
// rule in the order people write them (alert, expr, for, labels,
// annotations) rather than sorted.
//
// Strings are single-quoted ('' for a quote), or block scalars (|) when they
// span lines; keys are written plain (they are identifiers and label names).
local order = [
  'apiVersion', 'kind', 'metadata', 'spec',
  'name', 'rules',
  'alert', 'expr', 'for', 'labels', 'annotations',
  'severity', 'check',
  'summary', 'description',
];
local fields(o) =
  local all = std.objectFields(o);
  [f for f in order if std.objectHas(o, f)] + [f for f in all if std.count(order, f) == 0];

local quoted(s) = "'" + std.strReplace(s, "'", "''") + "'";
local scalar(v) =
  if std.isString(v) then quoted(v)
  else if std.isBoolean(v) || std.isNumber(v) then std.toString(v)
  else if v == null then 'null'
  else error 'not a scalar: ' + std.toString(v);
local multiline(v) = std.isString(v) && std.length(std.split(v, '\n')) > 1;
// The lines of a block scalar: `|` keeps one final newline, `|-` none.
local block(v, indent) =
  local lines = std.split(v, '\n');
  local ends = lines[std.length(lines) - 1] == '';
  local body = if ends then lines[0:std.length(lines) - 1] else lines;
  assert !ends || body[std.length(body) - 1] != '' : 'a block scalar may end in one newline only';
  [if ends then '|' else '|-'] + [if l == '' then '' else indent + l for l in body];

local entry(key, v, indent) =
  if std.isObject(v) && std.length(v) > 0 then
    [indent + key + ':'] + objectLines(v, indent + '  ')
  else if std.isArray(v) && std.length(v) > 0 then
    [indent + key + ':'] + arrayLines(v, indent + '  ')
  else if multiline(v) then
    local b = block(v, indent + '  ');
    [indent + key + ': ' + b[0]] + b[1:]
  else if std.isObject(v) then [indent + key + ': {}']
  else if std.isArray(v) then [indent + key + ': []']
  else [indent + key + ': ' + scalar(v)],
      objectLines(o, indent) =
  std.flattenArrays([entry(k, o[k], indent) for k in fields(o)]),
      arrayLines(a, indent) =
  std.flattenArrays([
    if std.isObject(item) then
      local lines = objectLines(item, indent + '  ');
      [indent + '- ' + std.substr(lines[0], std.length(indent) + 2, std.length(lines[0]))] + lines[1:]
    else if std.isArray(item) || multiline(item) then error 'nested arrays and block scalars in arrays are not needed here'
    else [indent + '- ' + scalar(item)]
    for item in a
  ]);

{
  // A document: an object, one line per field, ending with a newline.
  manifest(o):: std.join('\n', objectLines(o, '')) + '\n',
}
