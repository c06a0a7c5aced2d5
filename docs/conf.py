# Sphinx configuration of the ratio_losses site (docs/build.py copies it into the generated source tree).
project = 'ratio_losses'
author = 'the ratio_losses authors'
extensions = ['myst_nb']
exclude_patterns = ['_build', '**.ipynb_checkpoints']
source_suffix = {'.md': 'myst-nb', '.ipynb': 'myst-nb'}
nb_execution_mode = 'off'                       # pages show what the notebooks and the committed figures hold
nb_render_markdown_format = 'myst'              # show_doc's Markdown outputs, with their anchors
myst_enable_extensions = ['dollarmath', 'amsmath']
myst_heading_anchors = 3
suppress_warnings = ['myst.header', 'misc.highlighting_failure', 'mystnb.unknown_mime_type']
html_theme = 'sphinx_book_theme'
html_title = 'ratio_losses'
html_static_path = ['_static']
html_css_files = ['custom.css']
html_theme_options = {'use_download_button': False, 'use_fullscreen_button': False, 'use_repository_button': False,
                      'show_toc_level': 2, 'navigation_with_keys': False}
html_show_sourcelink = False
html_copy_source = False
mathjax_path = 'mathjax/tex-chtml.js'           # served from the site (MathJax 3 from npm), never from a CDN
mathjax3_config = {'tex': {'inlineMath': [['\\(', '\\)']], 'displayMath': [['\\[', '\\]']]}}
smartquotes = False                             # settings such as objective={"ce":{}} stay as typed
