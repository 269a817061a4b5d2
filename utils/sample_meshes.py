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

Command line: ``python -m utils.sample_meshes --out DIR`` writes both.
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
    lines = [f"newmtl {name}\nKd {r:.4f} {g:.4f} {b:.4f}\n" + (f"map_Kd {texture_name}\n" if tex else "")
             for name, ((r, g, b), tex) in materials.items()]
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
        h = elev[r0:r0 + tile, c0:c0 + tile] / FEET_PER_DEGREE * exaggeration
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
        crop = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (128, 128), interpolation=cv2.INTER_AREA)
        tex_name = f"terrain_{k}_photo.png"
        cv2.imwrite(str(folder / tex_name), crop)
        paths.append(_write_obj(folder / f"terrain_{k}.obj", verts, uv, faces, groups,
                                {"photo": ((1.0, 1.0, 1.0), True), "rock": ((0.55, 0.5, 0.45), False)}, tex_name))
    return paths


def checker_texture(cells=4, px=16):
    """uint8 (cells*px, cells*px, 3) RGB: a checker of two colours with a red top-left and a blue
    bottom-right cell, so that flips and rotations of the UVs show."""
    img = np.zeros((cells * px, cells * px, 3), np.uint8)
    for r in range(cells):
        for c in range(cells):
            img[r * px:(r + 1) * px, c * px:(c + 1) * px] = (235, 235, 235) if (r + c) % 2 else (40, 40, 40)
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
    quads = {"front": [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],
             "back": [(1, -1, -1), (-1, -1, -1), (-1, 1, -1), (1, 1, -1)],
             "right": [(1, -1, 1), (1, -1, -1), (1, 1, -1), (1, 1, 1)],
             "left": [(-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)],
             "top": [(-1, 1, 1), (1, 1, 1), (1, 1, -1), (-1, 1, -1)],
             "bottom": [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)]}
    uvs = [(0, 0), (1, 0), (1, 1), (0, 1)]
    faces, groups = [], []
    for name, q in quads.items():
        vids = [idx[tuple(np.array(c) * 0.5)] for c in q]
        faces.append((vids, [0, 1, 2, 3]))
        groups.append((name, "checker"))
    return _write_obj(folder / "checker_cube.obj", corners, uvs, faces, groups,
                      {"checker": ((1.0, 1.0, 1.0), True)}, "checker.png")


def main(argv=None):
    p = argparse.ArgumentParser(prog="sample_meshes.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write the OBJ files into")
    p.add_argument("--n_tiles", type=int, default=5, help="terrain blocks (default: %(default)s)")
    args = p.parse_args(argv)
    paths = write_terrain_tiles(Path(args.out) / "terrain", args.n_tiles) + [write_checker_cube(Path(args.out) / "cube")]
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
