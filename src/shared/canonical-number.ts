/** Decimal text without sign noise, leading zeros or trailing fractional zeros: `010.500` → `10.5`. */
export function canonicalNumber(text: string): string {
  let t = text.trim();
  if (/[eE]/.test(t)) {
    const n = Number(t);
    if (!Number.isFinite(n)) return t;
    t = Number.isInteger(n) && Math.abs(n) < Number.MAX_SAFE_INTEGER ? n.toFixed(0) : String(n);
  }
  let sign = '';
  if (t.startsWith('-') || t.startsWith('+')) {
    sign = t.startsWith('-') ? '-' : '';
    t = t.slice(1);
  }
  let [int = '', frac = ''] = t.split('.');
  int = int.replace(/^0+(?=\d)/, '') || '0';
  frac = frac.replace(/0+$/, '');
  const out = frac ? `${int}.${frac}` : int;
  return out === '0' ? '0' : `${sign}${out}`;
}
