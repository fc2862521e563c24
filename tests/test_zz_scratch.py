def test_it(tiny_run):
    import subprocess
    print(subprocess.run(["find", str(tiny_run), "-maxdepth", "2"], capture_output=True, text=True).stdout)
