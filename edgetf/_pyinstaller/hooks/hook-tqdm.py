"""PyInstaller hook for tqdm (edgetf's batch progress bar): keep its optional integrations out.

tqdm imports pandas, matplotlib, IPython, keras ... only inside the functions that integrate with them,
but PyInstaller follows those imports: with pandas installed (Ray Data brings it), pandas pulled in scipy
and scipy torch, and a frozen edgetf app grew by a gigabyte. An app that uses one of these imports it
itself, which PyInstaller follows.
"""

excludedimports = ["pandas", "matplotlib", "IPython", "ipywidgets", "keras", "tensorflow", "torch", "dask"]
