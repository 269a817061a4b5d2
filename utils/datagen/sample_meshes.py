"""Small mesh files to try ``data/make_dataset.py`` on, made from data shipped by installed packages.

No package in ``requirements.txt`` ships a 3D model file (trimesh's wheel has
none; matplotlib, scipy and OpenCV ship images and tables). The closest real,
non-procedural 3D data is matplotlib's sample data: a digital elevation model
(``jacksboro_fault_dem.npz``, 344 x 403 heights on a 3 arc-second grid, in
feet) and a photograph (``grace_hopper.jpg``). :func:`write_terrain_tiles`
turns windows of the elevation model into closed, textured blocks of terrain
(z up, as a map: render them with ``--up z``): the measured surface on top,
textured with the photograph through UV coordinates, grey walls and bottom.
:func:`write_checker_cube` writes a cube whose faces carry a labelled checker
texture (the row of renders in ``docs/``).

Command line: ``python -m utils.datagen.sample_meshes --out DIR`` writes both;
``--figures docs`` also draws the pictures of ``data/README.md`` from them.
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

TERRAIN_FILE = "jacksboro_fault_dem.npz"
PHOTO_FILE = "grace_hopper.jpg"
FEET_PER_DEGREE = 364000.0  # about 111 km per degree of latitude


def _sample_data(name):
    from matplotlib import cbook

    return cbook.get_sample_data(name, asfileobj=False)


def _write_obj(path, vertices, uvs, faces, groups, materials, texture_name=None):
    """OBJ + MTL. ``faces``: list of (vertex ids, uv ids or None) with 0-based ids; ``groups``:
    (group name, material name) per face; ``materials``: {name: (rgb, has_texture)}."""
    path = Path(path)
    mtl = path.with_suffix(".mtl")
    lines = [
        f"newmtl {name}\nKd {r:.4f} {g:.4f} {b:.4f}\n" + (f"map_Kd {texture_name}\n" if tex else "")
        for name, ((r, g, b), tex) in materials.items()
    ]
    mtl.write_text("".join(lines))
    out = [f"mtllib {mtl.name}\n", f"o {path.stem}\n"]
    out += [f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in vertices]
    out += [f"vt {u:.6f} {v:.6f}\n" for u, v in uvs]
    current = None
    for (vids, tids), grp in zip(faces, groups):
        if grp != current:
            out.append(f"g {grp[0]}\nusemtl {grp[1]}\n")
            current = grp
        if tids is None:
            out.append("f " + " ".join(str(i + 1) for i in vids) + "\n")
        else:
            out.append("f " + " ".join(f"{i + 1}/{t + 1}" for i, t in zip(vids, tids)) + "\n")
    path.write_text("".join(out))
    return path


def write_terrain_tiles(folder, n_tiles=5, tile=48, exaggeration=10.0, seed=0):
    """Textured terrain blocks from matplotlib's elevation model, one OBJ (+ MTL, PNG) per tile.

    Args:
        folder: where to write ``terrain_<k>.obj``, ``.mtl`` and ``_photo.png``.
        n_tiles: number of blocks, cut at seeded random places of the grid.
        tile: grid points per side of a block.
        exaggeration: vertical exaggeration of the heights.
    Returns:
        list of the OBJ paths. Units: degrees of latitude on the ground (x east,
        y north), heights in the same unit times ``exaggeration``; z up.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dem = np.load(_sample_data(TERRAIN_FILE))
    elev, step = dem["elevation"].astype(np.float64), float(dem["dx"])
    photo = cv2.imread(_sample_data(PHOTO_FILE))
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n_tiles):
        r0 = int(rng.integers(0, elev.shape[0] - tile))
        c0 = int(rng.integers(0, elev.shape[1] - tile))
        h = elev[r0 : r0 + tile, c0 : c0 + tile] / FEET_PER_DEGREE * exaggeration
        base = h.min() - 0.15 * tile * step
        rows, cols = np.meshgrid(np.arange(tile), np.arange(tile), indexing="ij")
        top = np.stack([cols.ravel() * step, -rows.ravel() * step, h.ravel()], 1)  # row 0 = north edge
        uv = np.stack([cols.ravel() / (tile - 1), 1 - rows.ravel() / (tile - 1)], 1)  # photo upright from above
        vid = np.arange(tile * tile).reshape(tile, tile)
        faces, groups = [], []
        for r in range(tile - 1):
            for c in range(tile - 1):
                a, b, cc, d = vid[r, c], vid[r + 1, c], vid[r + 1, c + 1], vid[r, c + 1]
                faces += [((a, b, cc), (a, b, cc)), ((a, cc, d), (a, cc, d))]
                groups += [("ground", "photo")] * 2
        # walls and bottom: the boundary of the grid, anticlockwise seen from above, dropped to the base
        ring = list(vid[0, :]) + list(vid[1:, -1]) + list(vid[-1, -2::-1]) + list(vid[-2:0:-1, 0])
        bottom0 = len(top)
        verts = np.concatenate([top, top[ring] * [1, 1, 0] + [0, 0, base]])
        n = len(ring)
        for i in range(n):
            j = (i + 1) % n
            faces += [((ring[j], ring[i], bottom0 + i), None), ((ring[j], bottom0 + i, bottom0 + j), None)]
            groups += [("walls", "rock")] * 2
        centre = bottom0 + n
        verts = np.concatenate([verts, [[verts[bottom0:, 0].mean(), verts[bottom0:, 1].mean(), base]]])
        for i in range(n):
            faces.append(((bottom0 + (i + 1) % n, bottom0 + i, centre), None))
            groups.append(("bottom", "rock"))
        y0 = int(rng.integers(0, photo.shape[0] // 3))
        x0 = int(rng.integers(0, photo.shape[1] // 3))
        side = min(photo.shape[0] - y0, photo.shape[1] - x0)
        crop = cv2.resize(photo[y0 : y0 + side, x0 : x0 + side], (128, 128), interpolation=cv2.INTER_AREA)
        tex_name = f"terrain_{k}_photo.png"
        cv2.imwrite(str(folder / tex_name), crop)
        paths.append(
            _write_obj(
                folder / f"terrain_{k}.obj",
                verts,
                uv,
                faces,
                groups,
                {"photo": ((1.0, 1.0, 1.0), True), "rock": ((0.55, 0.5, 0.45), False)},
                tex_name,
            )
        )
    return paths


def checker_texture(cells=4, px=16):
    """uint8 (cells*px, cells*px, 3) RGB: a checker of two colours with a red top-left and a blue
    bottom-right cell, so that flips and rotations of the UVs show."""
    img = np.zeros((cells * px, cells * px, 3), np.uint8)
    for r in range(cells):
        for c in range(cells):
            img[r * px : (r + 1) * px, c * px : (c + 1) * px] = (235, 235, 235) if (r + c) % 2 else (40, 40, 40)
    img[:px, :px] = (220, 30, 30)
    img[-px:, -px:] = (30, 60, 220)
    return img


def write_checker_cube(folder):
    """A unit cube, every face textured with :func:`checker_texture` (upright on the four sides)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "checker.png"), cv2.cvtColor(checker_texture(), cv2.COLOR_RGB2BGR))
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    idx = {tuple(c): i for i, c in enumerate(corners)}
    # each face: four corners anticlockwise seen from outside, starting bottom-left (y up on the sides)
    quads = {
        "front": [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],
        "back": [(1, -1, -1), (-1, -1, -1), (-1, 1, -1), (1, 1, -1)],
        "right": [(1, -1, 1), (1, -1, -1), (1, 1, -1), (1, 1, 1)],
        "left": [(-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)],
        "top": [(-1, 1, 1), (1, 1, 1), (1, 1, -1), (-1, 1, -1)],
        "bottom": [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)],
    }
    uvs = [(0, 0), (1, 0), (1, 1), (0, 1)]
    faces, groups = [], []
    for name, q in quads.items():
        vids = [idx[tuple(np.array(c) * 0.5)] for c in q]
        faces.append((vids, [0, 1, 2, 3]))
        groups.append((name, "checker"))
    return _write_obj(
        folder / "checker_cube.obj", corners, uvs, faces, groups, {"checker": ((1.0, 1.0, 1.0), True)}, "checker.png"
    )


def turntable(path, up="y", azimuths=range(0, 360, 45), elevation=20.0, size=64, shading=False):
    """Views of one mesh file at fixed angles (degrees), as make_dataset renders it: uint8 (V, H, W, 3)."""
    from utils.datagen.mesh_io import load_mesh, normalise
    from utils.datagen.mesh_render import MeshRenderer

    surface, _, _ = normalise(load_mesh(path, up).surface)
    renderer = MeshRenderer(surface)
    return np.stack(
        [
            np.round(renderer.render(np.radians(a), np.radians(elevation), size, size, shading).rgb * 255).astype(
                np.uint8
            )
            for a in azimuths
        ]
    )


def _row(views, zoom=2, gap=4):
    """Views side by side on a dark grey strip, enlarged without smoothing: uint8 RGB."""
    big = [cv2.resize(v, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) for v in views]
    h = big[0].shape[0]
    strip = np.full((h, len(big) * (h + gap) - gap, 3), 32, np.uint8)
    for k, b in enumerate(big):
        strip[:, k * (h + gap) : k * (h + gap) + h] = b
    return strip


def figures(out, work):
    """The two pictures of data/README.md: ``mesh_renders.png`` and ``mesh_up_axis.png`` in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, work = Path(out), Path(work)
    out.mkdir(parents=True, exist_ok=True)
    cube = write_checker_cube(work / "cube")
    tile = write_terrain_tiles(work / "terrain", n_tiles=1)[0]
    top, bottom = _row(turntable(cube)), _row(turntable(tile, up="z"))
    rows = np.concatenate([top, np.full((4, top.shape[1], 3), 32, np.uint8), bottom], 0)
    cv2.imwrite(str(out / "mesh_renders.png"), cv2.cvtColor(rows, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])

    fig = plt.figure(figsize=(7.6, 2.3), dpi=100)
    grid = fig.add_gridspec(2, 2, width_ratios=(1.25, 4))
    ax = fig.add_subplot(grid[:, 0])
    into, out_of = np.array([0.35, 0.25]), np.array([-0.35, -0.25])  # oblique drawing of the depth axis
    for origin, axes3, title in (
        ((0.0, 0.0), (("x", (1, 0)), ("y", into), ("z", (0, 1))), "source, z up"),
        ((1.9, 0.0), (("x", (1, 0)), ("y", (0, 1)), ("z", out_of)), "ShapeNet frame"),
    ):
        for name, d in axes3:
            d = np.asarray(d, float) * 0.8
            ax.annotate("", xy=np.add(origin, d), xytext=origin, arrowprops=dict(arrowstyle="->", lw=1.2))
            ax.text(*(np.add(origin, d * 1.18)), name, fontsize=8, ha="center", va="center")
        ax.text(origin[0] + 0.35, -0.65, title, fontsize=7, ha="center")
    ax.annotate("", xy=(1.55, 0.35), xytext=(1.05, 0.35), arrowprops=dict(arrowstyle="->", lw=1, color="0.4"))
    ax.text(1.3, 0.5, "--up z", fontsize=7, ha="center", color="0.3")
    ax.set_xlim(-0.6, 3.0)
    ax.set_ylim(-0.8, 1.1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    for k, up in enumerate(("y", "z")):
        ax = fig.add_subplot(grid[k, 1])
        ax.imshow(_row(turntable(tile, up=up, azimuths=range(0, 360, 60)), zoom=1))
        ax.set_axis_off()
        label = (
            "--up y (default): a z-up source lies on its side"
            if up == "y"
            else "--up z: (x, y, z) -> (x, z, -y), upright"
        )
        ax.set_title(label, fontsize=8, loc="left")
    fig.tight_layout(pad=0.3)
    fig.savefig(out / "mesh_up_axis.png")
    plt.close(fig)
    return [out / "mesh_renders.png", out / "mesh_up_axis.png"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="sample_meshes.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write the OBJ files into")
    p.add_argument("--n_tiles", type=int, default=5, help="terrain blocks (default: %(default)s)")
    p.add_argument(
        "--figures", default=None, metavar="DIR", help="also draw the pictures of data/README.md into DIR (e.g. docs)"
    )
    args = p.parse_args(argv)
    paths = write_terrain_tiles(Path(args.out) / "terrain", args.n_tiles) + [
        write_checker_cube(Path(args.out) / "cube")
    ]
    if args.figures:
        paths += figures(args.figures, Path(args.out) / "figures")
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
