"""Publishing a build: units packed into rows (`packing`), the counts (`counts`), the folder and the Hub push
(`writer`), the dataset card (`card`), the plots (`plots`) and the tables' schema version (`schema`)."""
