module chaos.test/demo-app

go 1.22
