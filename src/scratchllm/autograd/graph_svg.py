"""The computation graph drawn as SVG by scratchllm itself: a small layered (Sugiyama) layout.

No Graphviz needed. The steps, each a few lines below:

1. **layers**: the output sits in the last column; every other node one column left of the
   earliest node that uses it (so a constant appears right before the op that consumes it);
2. **dummy points**: an edge that jumps over columns gets one bend point per column it crosses,
   so no edge runs through a box (unless that would take more than ``MAX_BENDS_PER_NODE`` points
   per node: then long edges are drawn as one curve);
3. **order**: within each column, nodes are sorted by the mean position of their neighbours
   (the barycenter heuristic), sweeping left-to-right and right-to-left a few times, which
   removes most edge crossings;
4. **coordinates**: columns left to right, nodes stacked top to bottom, edges as smooth cubic
   curves from a parent's right side to its child's left side, with an arrow head.

Nodes are given as ``(rows, style)``: the text rows of the box (the first is the title, drawn
bold) and one of ``"leaf"`` (blue), ``"const"`` (grey), ``"op"`` (cream) ; ``outputs`` get a
double border. Edges are ``(parent, child, label)``; a label (a local derivative) is written on
the edge. Everything is computed iteratively (a 100,000-node chain draws without recursion).

>>> svg = layered_svg([(["leaf", "data 2"], "leaf"), (["*", "data 4"], "op")], [(0, 1, "2"), (0, 1, "2")], [1])
>>> svg.startswith("<svg") and svg.count("marker-end=") == 2
True
"""
from __future__ import annotations

from collections import defaultdict, deque
from xml.sax.saxutils import escape

CHAR_W, ROW_H, PAD = 7.3, 15.0, 7.0   # monospace 12px text: width per character, row height, box padding
COL_GAP, NODE_GAP, MARGIN = 70.0, 22.0, 12.0
FILL = {"leaf": "#cfe8ff", "const": "#e6e6e6", "op": "#fff4dc"}
SWEEPS = 6
MAX_BENDS_PER_NODE = 8      # beyond this many bend points per node and edge, long edges are drawn straight


def layered_svg(nodes, edges, outputs=(), title: str = "computation graph") -> str:
    """SVG text of the DAG ``nodes``/``edges`` (see the module docstring for their form)."""
    n = len(nodes)
    layer = _layers(n, edges, outputs)
    columns, chains = _with_dummies(n, layer, edges)
    _order(columns, chains, n)
    sizes = [_box_size(rows) for rows, _ in nodes]
    pos, width, height = _coordinates(columns, sizes, n)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
           'font-size="12">',
           f"<title>{escape(title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>']
    out += _edges_svg(edges, chains, pos, sizes)
    outputs = set(outputs)
    for i, (rows, style) in enumerate(nodes):
        out += _node_svg(rows, style, pos[i], sizes[i], i in outputs)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _layers(n, edges, outputs):
    """Column of each node: the sinks (outputs) last, every other node just left of its first user."""
    children = defaultdict(set)
    parents = defaultdict(set)
    for p, c, _ in edges:
        children[p].add(c)
        parents[c].add(p)
    pending = {i: len(children[i]) for i in range(n)}
    depth = [0] * n                            # longest distance to a sink
    queue = deque(i for i in range(n) if pending[i] == 0)
    order = []
    while queue:                               # sinks first, then nodes whose users are all placed
        i = queue.popleft()
        order.append(i)
        for p in parents[i]:
            depth[p] = max(depth[p], depth[i] + 1)
            pending[p] -= 1
            if pending[p] == 0:
                queue.append(p)
    if len(order) != n:
        raise ValueError("draw_graph: the graph has a cycle")
    last = max(depth, default=0)
    layer = [last - d for d in depth]
    for i in order:                            # pull nodes (leaves, constants) right, next to their first user
        if children[i]:
            layer[i] = min(layer[c] for c in children[i]) - 1
    return layer


def _with_dummies(n, layer, edges):
    """Columns of node ids (dummy points numbered from n) and, per edge, its chain of points."""
    columns = defaultdict(list)
    for i in range(n):
        columns[layer[i]].append(i)
    chains, next_id = [], n
    bends = sum(layer[c] - layer[p] - 1 for p, c, _ in edges)
    budget = bends <= MAX_BENDS_PER_NODE * (n + len(edges))   # a node feeding 10,000 later ops: no bends
    for p, c, _ in edges:
        chain = [p]
        for col in range(layer[p] + 1, layer[c] if budget else layer[p] + 1):
            columns[col].append(next_id)
            chain.append(next_id)
            next_id += 1
        chain.append(c)
        chains.append(chain)
    return [columns[k] for k in sorted(columns)], chains


def _order(columns, chains, n):
    """Barycenter sweeps: sort each column by the mean row of its neighbours in the previous one."""
    left, right = defaultdict(list), defaultdict(list)
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            right[a].append(b)
            left[b].append(a)
    rank = {v: k for col in columns for k, v in enumerate(col)}
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        cols = range(1, len(columns)) if forward else range(len(columns) - 2, -1, -1)
        for k in cols:
            nbrs = left if forward else right
            col = columns[k]
            key = {v: (sum(rank[u] for u in nbrs[v]) / len(nbrs[v]) if nbrs[v] else rank[v]) for v in col}
            col.sort(key=lambda v: (key[v], rank[v]))
            for r, v in enumerate(col):
                rank[v] = r


def _box_size(rows):
    return max(len(r) for r in rows) * CHAR_W + 2 * PAD, len(rows) * ROW_H + 2 * PAD - 3


def _coordinates(columns, sizes, n):
    """Top-left corner of each node (dummy points get a zero-size box), and the picture size."""
    size = lambda v: sizes[v] if v < n else (0.0, 6.0)
    col_w = [max(size(v)[0] for v in col) for col in columns]
    col_h = [sum(size(v)[1] for v in col) + NODE_GAP * (len(col) - 1) for col in columns]
    height = max(col_h) + 2 * MARGIN
    pos, x = {}, MARGIN
    for col, w, h in zip(columns, col_w, col_h):
        y = (height - h) / 2
        for v in col:
            vw, vh = size(v)
            pos[v] = (x + (w - vw) / 2, y)
            y += vh + NODE_GAP
        x += w + COL_GAP
    return pos, x - COL_GAP + MARGIN, height


def _edges_svg(edges, chains, pos, sizes):
    n = len(sizes)
    size = lambda v: sizes[v] if v < n else (0.0, 6.0)
    seen = defaultdict(int)
    multiplicity = defaultdict(int)
    for p, c, _ in edges:
        multiplicity[(p, c)] += 1
    out, labels = [], []
    for (p, c, label), chain in zip(edges, chains):
        k, m = seen[(p, c)], multiplicity[(p, c)]
        seen[(p, c)] += 1
        shift = (k - (m - 1) / 2) * 12.0            # parallel edges (a * a) side by side
        pts = []
        for j, v in enumerate(chain):
            (x, y), (w, h) = pos[v], size(v)
            dy = shift if j in (0, len(chain) - 1) else 0.0
            if j == 0:
                pts.append((x + w, y + h / 2 + dy))
            elif j == len(chain) - 1:
                pts.append((x, y + h / 2 + dy))
            else:
                pts.append((x, y + h / 2))
        d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            mx = (x0 + x1) / 2
            d += f" C{mx:.1f},{y0:.1f} {mx:.1f},{y1:.1f} {x1:.1f},{y1:.1f}"
        out.append(f'<path d="{d}" fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"/>')
        if label:
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
            lx, ly = x0 + 0.55 * (x1 - x0), y0 + 0.55 * (y1 - y0)
            w = len(label) * 6.2 + 6
            labels.append(f'<rect x="{lx - w / 2:.1f}" y="{ly - 8:.1f}" width="{w:.1f}" height="14" fill="white" '
                          f'fill-opacity="0.85"/><text x="{lx:.1f}" y="{ly + 3:.1f}" text-anchor="middle" '
                          f'font-size="10.5" fill="#b03030">{escape(label)}</text>')
    return out + labels


def _node_svg(rows, style, xy, wh, is_output):
    (x, y), (w, h) = xy, wh
    out = [f'<g><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="6" '
           f'fill="{FILL.get(style, "#ffffff")}" stroke="#333" stroke-width="1.2"/>']
    if is_output:
        out.append(f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="{w + 6:.1f}" height="{h + 6:.1f}" rx="8" '
                   'fill="none" stroke="#333" stroke-width="1.2"/>')
    for r, text in enumerate(rows):
        weight = ' font-weight="bold"' if r == 0 else ""
        out.append(f'<text x="{x + w / 2:.1f}" y="{y + PAD + 11 + r * ROW_H:.1f}" text-anchor="middle"{weight}>'
                   f"{escape(text)}</text>")
    out.append("</g>")
    return out
